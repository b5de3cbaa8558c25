"""The domain-shift benchmark: paired statistics, classifier-free baselines, report.

``pathda.benchmark.stats`` holds the paired-difference bootstrap; the rest turns the
workflow's score files into ``docs/benchmarks/shift.{md,json}``.
"""
