"""Split a prompt's execution into model load and inference, from ComfyUI's per-node events.

On a real ComfyUI the weights load *inside* execution: the loader nodes
(``CheckpointLoaderSimple``, ``UNETLoader``, ``LoraLoader``…) read the files
after ``execution_start``, and the sampler moves the model to the GPU
("Requested to load …") before its first step. Counting from
``execution_start`` alone labels all of that "inference". This clock watches
the event stream instead:

- a loader node's time is from its ``executing`` to the next node's (cached
  loaders send no ``executing`` and cost nothing);
- a sampler's load is the time to its first ``progress`` minus one step
  (the second step's duration), counted only when a loader ran in this
  prompt — with the models cached there is nothing to move.

Pure and clock-free (times are passed in), so it is tested with synthetic
timestamps. Without events (the socket dropped) it reports no load.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def is_loader(class_type: str | None) -> bool:
    """Loader nodes by name, as ComfyUI and custom nodes name them (``…Loader…``)."""
    return bool(class_type) and "Loader" in str(class_type)


@dataclass
class PhaseClock:
    """Feed it ``observe`` calls in order; read :attr:`model_load` at the end."""

    node_seconds: dict[str, float] = field(default_factory=dict)
    classes: dict[str, str | None] = field(default_factory=dict)
    _current: str | None = None
    _since: float = 0.0
    _steps: dict[str, list[float]] = field(default_factory=dict)
    _started: dict[str, float] = field(default_factory=dict)

    def observe(self, kind: str, node: str | None, class_type: str | None, t: float) -> None:
        """One event (``executing``, ``progress``, ``executed``, terminal ones) at time ``t``."""
        if kind == "executing":
            self._close(t)
            if node is not None:
                self._current, self._since = node, t
                self.classes[node] = class_type
                self._started.setdefault(node, t)
        elif kind == "progress" and node is not None:
            self._steps.setdefault(node, []).append(t)
        elif kind in ("execution_success", "execution_error", "execution_interrupted"):
            self._close(t)

    def _close(self, t: float) -> None:
        if self._current is not None:
            spent = max(0.0, t - self._since)
            self.node_seconds[self._current] = self.node_seconds.get(self._current, 0.0) + spent
            self._current = None

    @property
    def loaded(self) -> bool:
        """Whether any loader node actually ran (a cold model cache)."""
        return any(is_loader(c) for c in self.classes.values())

    @property
    def model_load(self) -> float:
        """Seconds spent loading models (loader nodes + the samplers' first-step load)."""
        loaders = sum(s for n, s in self.node_seconds.items() if is_loader(self.classes.get(n)))
        if not self.loaded:
            return loaders
        sampler_load = 0.0
        for node, steps in self._steps.items():
            start = self._started.get(node)
            if start is None or len(steps) < 2:
                continue
            first, step = steps[0] - start, steps[1] - steps[0]
            sampler_load += max(0.0, first - step)
        return loaders + sampler_load
