"""The fork engine's template process preloads this module (multiprocessing's forkserver
preload), and preloading is all a fork server does: so this is the one module whose import
does work. Every job forks from the warmed-up process."""
from sweepbook.executors.warmup import warm_up

warm_up()
