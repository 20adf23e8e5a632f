"""Pure protocol code: parsing, URL building, macros, ID crypto, cookies, OpenRTB.

Standard library plus ``cryptography`` and ``msgspec`` (the OpenRTB wire model) only: no
asyncio, no server, no store.
"""
