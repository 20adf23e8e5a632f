"""The buyer (DSP / bidder) role: match table, match-tag decisions, pixel matching, bidding.

Domain only: functions and services that take parsed values and return values; no HTTP
types. ``cookiematch.web.buyer.routes`` parses requests and renders what these return.
"""
