"""Synthetic scorers with known behaviour, for testing diagnostics."""

import re

class Synthetic:
    """Pure-Python scorers: no torch model behind them (they prove the Scorer seam)."""

    def describe(self):
        return {"kind": "synthetic", "model": type(self).__name__, "settings": {}, "record": {}}


TOPIC_WORDS = {"bees", "honey", "hive", "rain", "rivers", "clouds", "trains", "rails", "chess", "king", "moon", "orbit"}


class LengthScorer(Synthetic):
    """Reward = number of words: the purest length pathology."""

    def score(self, prompts, responses):
        return [float(len(r.split())) for r in responses]


class MarkdownScorer(Synthetic):
    """Rewards Markdown markers (headings, bold, bullets) and nothing else."""

    def score(self, prompts, responses):
        return [float(r.count("#") + r.count("**") + len(re.findall(r"^- ", r, flags=re.M))) for r in responses]


class ContentScorer(Synthetic):
    """Pathology-free: counts distinct topic words; filler, formatting and flattery change nothing."""

    def score(self, prompts, responses):
        return [float(len(TOPIC_WORDS & set(re.findall(r"[a-z]+", r.lower())))) for r in responses]


class FixedScorer(Synthetic):
    """Returns preset rewards keyed by response text."""

    def __init__(self, table):
        self.table = table

    def score(self, prompts, responses):
        return [self.table[r] for r in responses]
