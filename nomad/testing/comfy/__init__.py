"""FakeComfy — a ComfyUI HTTP/WebSocket *protocol double* on loopback.

It is not ComfyUI and runs no model. It speaks the wire protocol observed on
a real ComfyUI 0.28 (routes, ``/ws`` message sequence, 400 validation shapes,
``/history``, ``/view``, the Origin check, ``/api/…`` aliases; recorded
sequences in ``tests/comfy/traces/``) and "executes" a graph by walking it
from its output nodes, producing small deterministic files whose bytes derive
from the node inputs (seed, prompt) and from any uploaded input image, so
tests can check what went in came out. Behaviour copied from the real server:
``type: output`` vs ``type: temp`` (PreviewImage) items, PNGs carrying the
graph in ``tEXt prompt``/``workflow`` chunks, a cache that keeps only the
previous prompt's nodes, model loading inside execution (``load_delay``),
``/interrupt`` landing at the next node or sampler step.

Use it in-process (``async with FakeComfy() as fc: fc.url``), from sync tests
(``fc = FakeComfy.start_in_thread(); …; fc.stop()``) or as a process standing
in for ComfyUI::

    python -m nomad.testing.comfy --host 127.0.0.1 --port 8188 --delay 0.05

Fault injection (``_faults``): ``fail_at_node`` (execution_error),
``die_at_node`` (the server closes every socket and stops listening),
``drop_ws_at_node`` (sockets are closed but the prompt completes in
``/history``), ``hold_at_step`` (the sampler waits there until
:meth:`FakeComfy.release` or an interrupt: deterministic interrupt tests
without timing). ``interrupts`` and ``deleted`` record every ``/interrupt``
and queue deletion it was asked for; ``loads`` every model file read.

Modules, one concern each: ``_server`` (construction, lifecycle), ``_routes``
(HTTP), ``_sockets`` (WebSocket), ``_validation`` (``/prompt`` checks),
``_execution`` (the execution model and cache), ``_faults`` (fault
injection), ``_specs`` (node classes), ``_files`` (PNG/video bytes),
``_process`` (the command line).
"""

from nomad.testing.comfy._files import png_bytes, png_text
from nomad.testing.comfy._process import main
from nomad.testing.comfy._server import FakeComfy
from nomad.testing.comfy._specs import NODE_SPECS, NodeSpec

__all__ = ["NODE_SPECS", "FakeComfy", "NodeSpec", "main", "png_bytes", "png_text"]
