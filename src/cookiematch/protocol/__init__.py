"""Pure protocol code: parsing, URL building, macros, ID crypto, cookies.

Standard library plus ``cryptography`` only: no asyncio, no server, no store.
"""
