-- exchange /pixel cookie match: a browser that has the exchange cookie (cm_id) plus others,
-- google_nid + google_cm + two extra parameters. Every request is the same.
--   wrk -s bench/lua/cookie_match.lua http://127.0.0.1:PORT
wrk.method = "GET"
wrk.path = "/pixel?google_nid=ad_network_xyz&google_cm&p1=v1&p2=v2"
wrk.headers["Cookie"] = "_ga=GA1.2.1234567890.1700000000; cm_id=AAECAwQFBgcICQoLDA0ODw; lang=en"
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
wrk.headers["Accept"] = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"
