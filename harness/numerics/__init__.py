"""The numerical engine: finite differences with their error estimates (differences), random
directions and the confirmations of a doubt (probes), the cheap screen along directions
(screen), group testing and sign splits that locate wrong elements (localize), and autograd
held against finite differences input by input (compare). Check families call it; the
messages it leads to are written in harness.diagnose."""
