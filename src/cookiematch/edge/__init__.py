"""The edge: nginx + Lua in front of ``cookiematch serve``, answering the pure cookie match.

``buyers.py`` decides which buyers the edge may answer and prepares their pieces (derived keys,
the redirect split at the gid) with the protocol's own code; ``render.py`` writes the nginx
configuration, the Lua module shipped here (``cookiematch_edge.lua``) and the key file.
docs/edge.md describes the deployment.
"""
