"""One privacy policy for every role: what a request's consent signals allow.

    signals.py   ConsentSignals: a request's signals decoded once (TCF, GPP, US Privacy, GPC)
    policy.py    PrivacyPolicy.decide(operation, signals, vendor_id) -> Decision with a reason

Pure (no I/O, no store): the roles' composition roots build one ``PrivacyPolicy`` from the
configuration's ``[privacy]`` table and every role asks it before it sets or reads its cookie,
shares an ID with a party, or uses an ID to choose ads. docs/privacy.md has the rules.
"""
