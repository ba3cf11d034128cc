"""pop3_anyio: POP3 client and server on anyio (asyncio and trio). Not built yet."""
