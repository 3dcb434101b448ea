"""The mesh's live load, per pool and priority class: what each process measures (`METER`: items
stored, attempts started and ended, how long each held its slot and waited), and the scheduler's
sliding window over every process's reports (`LoadWindow` → `LoadReport`), which `GetLoad` serves
and capacity previews (`mesh.capacity.Load`) take as arrival rates, service times and backlogs."""

from mesh.load._meter import METER, SAMPLES_PER_REPORT, LoadMeter, key_of
from mesh.load._sample import PrioritySample, Reservoir, even_draw, weighted_quantile
from mesh.load._window import BUCKET_S, DEFAULT_WINDOW_S, MAX_SERVICE_SAMPLES, LoadWindow

__all__ = [
    "BUCKET_S",
    "DEFAULT_WINDOW_S",
    "MAX_SERVICE_SAMPLES",
    "METER",
    "SAMPLES_PER_REPORT",
    "LoadMeter",
    "LoadWindow",
    "PrioritySample",
    "Reservoir",
    "even_draw",
    "key_of",
    "weighted_quantile",
]
