"""The local trace viewer: static pages plus a read-only JSON API over the local store.

Served on the sidecar's admin address in local mode and by ``tracekit traces serve``. The page
(``static/``) is plain HTML/CSS/JS shipped in the package: no build step, no network.
"""
