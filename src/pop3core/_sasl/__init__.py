"""SASL (RFC 4422 as used by RFC 5034): mechanism interfaces and implementations."""
