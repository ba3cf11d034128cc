"""pop3_blocking: POP3 over blocking sockets (a poplib drop-in, a client, a server)."""
