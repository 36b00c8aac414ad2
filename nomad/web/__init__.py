"""The web front door: a one-button page and a JSON API over the job queue.

Like every front door it only enqueues and reports: it never talks to ComfyUI
or a cloud. ``aiohttp`` is imported only by :mod:`nomad.web.app` (extra ``web``).
"""
