import timeit
from cookiematch.protocol.query import parse_query
from cookiematch.protocol.matchtag import parse_match_tag
from cookiematch.protocol.redirect import RedirectTemplate, ResponseParams
from cookiematch.protocol.userid import UserIdCipher
c = UserIdCipher({1: bytes(32)})
t = RedirectTemplate.compile("https://ad.network.com/pixel?id=")
tm = RedirectTemplate.compile("http://user.buyer.com/cookies?w=0%%GOOGLE_PUSH_PAIR%%&x=1%%GOOGLE_GID_PAIR&y=2%%GOOGLE_CVER_PAIR%%&z=3%%GOOGLE_ERROR_PAIR%%")
raw = b"google_nid=ad_network_xyz&google_cm&google_ula=12345&p1=v1&p2=v2"
bid = bytes(range(16))
def full(t=t):
    tag = parse_match_tag(parse_query(raw))
    gid = c.encrypt(bid, tag.nid)
    return t.render("https", ResponseParams(gid=gid, cver=1, user_lists=tuple((u.raw_id, 0) for u in tag.user_list_adds)), tag.extras)
print(full())
n = 100000
tag = parse_match_tag(parse_query(raw)); resp = ResponseParams(gid=c.encrypt(bid, "ad_network_xyz"), cver=1, user_lists=(("12345", 0),))
for name, f in [("parse_query", lambda: parse_query(raw)),
                ("parse_match_tag", lambda: parse_match_tag(tag.params)),
                ("encrypt", lambda: c.encrypt(bid, "ad_network_xyz")),
                ("render", lambda: t.render("https", resp, tag.extras)),
                ("render macros", lambda: tm.render("https", resp, tag.extras)),
                ("full", full), ("full macros", lambda: full(tm))]:
    best = min(timeit.repeat(f, number=n, repeat=5)) / n * 1e6
    print(f"{name:16s} {best:6.2f} µs")
