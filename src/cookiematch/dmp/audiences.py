"""Audience key-values of a profile, for real-time creative optimisation (DCO).

The segments the browser belongs to, and values derived directly from the profile:

    dmp_segments   segment ids (dmp/segments/)
    dmp_partners   partners this browser is synced with
    dmp_imp        campaigns that showed it an impression
    dmp_click      campaigns it clicked
    dmp_conv       campaigns it converted on
    <partner>_<key>  in-band data received from a partner

Every value is a sorted list of strings, so an ad server can treat each key alike.
"""

from __future__ import annotations

from cookiematch.dmp.profiles import Profile


def audience_kv(profile: Profile) -> dict[str, list[str]]:
    kv: dict[str, set[str]] = {
        "dmp_partners": set(profile.partners),
        "dmp_segments": set(profile.segments),
    }
    for event in profile.events:
        kv.setdefault(f"dmp_{event.event}", set()).add(event.campaign)
    for partner_id, pairs in profile.inband.items():
        for key, value in pairs.items():
            kv.setdefault(f"{partner_id}_{key}", set()).add(value)
    return {key: sorted(values) for key, values in sorted(kv.items()) if values}
