"""The embedded demo preference set: instructions with a programmatic gold preference.

Four verifiable instruction types, each pair differing only in whether the instruction is
followed:

* ``topic``: "Tell me about X." -- on-topic reply preferred over an off-topic one;
* ``keyword``: "... use the word W." -- the reply containing W preferred;
* ``word_limit``: "In at most N words ..." -- the reply within the limit preferred;
* ``bullets``: "List K facts ... as bullet points." -- the bulleted reply preferred over prose.

Length is a trap on purpose: in ``train`` (and ``test``, same distribution) the chosen reply is
the longer one in about 70% of pairs (neutral filler is added to it), in ``balanced`` in 50%, so a
model that learned "longer is better" scores well on ``test`` and near chance on ``balanced``.
Deterministic for a given seed; no network.
"""

from __future__ import annotations

import random
from typing import Literal

from .records import Message, PreferencePair

__all__ = ["DEMO_TASKS", "demo_pairs"]

DEMO_TASKS = ("topic", "keyword", "word_limit", "bullets")

_FACTS = {
    "the ocean": ["Oceans cover most of the planet's surface.", "Sea water is salty because rivers carry minerals into it.",
                  "Tides are caused by the pull of the moon.", "Whales and plankton both live in the open sea."],
    "volcanoes": ["A volcano is an opening where molten rock reaches the surface.", "Lava cools into new rock.",
                  "Some volcanoes erupt explosively and throw ash into the sky.", "Hawaii was built by volcanic eruptions."],
    "bees": ["Bees collect nectar and pollen from flowers.", "Honey is made from nectar stored in the hive.",
             "A colony has one queen and many worker bees.", "Bees pollinate many of the crops people eat."],
    "bicycles": ["A bicycle has two wheels driven by pedals.", "Gears let a rider climb hills with less effort.",
                 "Riding a bike is good exercise.", "Brakes on a bicycle press pads against the wheel or a disc."],
    "coffee": ["Coffee is brewed from roasted coffee beans.", "Caffeine in coffee helps people feel awake.",
               "Espresso is made by forcing hot water through fine grounds.", "Coffee plants grow best in warm highlands."],
    "the moon": ["The moon orbits the earth about once a month.", "Astronauts first walked on the moon in 1969.",
                 "The moon has no air and no liquid water on its surface.", "Craters on the moon come from meteor impacts."],
    "chess": ["Chess is played on a board of sixty-four squares.", "Each player starts with sixteen pieces.",
              "The goal is to checkmate the opposing king.", "The knight moves in an L shape."],
    "rain": ["Rain falls when water droplets in clouds grow heavy.", "Rain fills rivers, lakes and reservoirs.",
             "Some deserts get almost no rain in a year.", "A rainbow appears when sunlight shines through raindrops."],
    "libraries": ["A library lends books to the public for free.", "Librarians help people find information.",
                  "Many libraries also offer computers and quiet rooms.", "Books in a library are sorted by subject."],
    "trains": ["Trains run on steel rails.", "Electric trains draw power from overhead wires.",
               "A freight train can carry thousands of tons of goods.", "High-speed trains connect many large cities."],
}
_KEYWORDS = ["bright", "gentle", "ancient", "curious", "silent", "golden", "rapid", "humble", "vivid", "steady",
             "brave", "tiny", "fragrant", "distant", "clever", "rugged"]
_FILLER = ["I hope this helps.", "Let me know if you want more detail.", "That is a short summary.",
           "There is a lot more one could say about this.", "Thanks for asking such a nice question."]


def _pad(text: str, rng: random.Random, n: int) -> str:
    return " ".join([text] + rng.sample(_FILLER, n))


def _make(task: str, rng: random.Random, chosen_longer: bool) -> tuple[str, str, str]:
    topic, other = rng.sample(sorted(_FACTS), 2)
    facts = rng.sample(_FACTS[topic], 2)
    extra = rng.randint(1, 2)
    if task == "topic":
        prompt = f"Tell me something about {topic}."
        chosen, rejected = " ".join(facts), " ".join(rng.sample(_FACTS[other], 2))
    elif task == "keyword":
        word, wrong = rng.sample(_KEYWORDS, 2)
        prompt = f"Write two sentences about {topic} and use the word '{word}'."
        chosen, rejected = f"{facts[0]} It is a {word} subject.", f"{facts[0]} It is a {wrong} subject."
    elif task == "word_limit":
        limit = rng.randint(6, 9)
        short = " ".join(facts[0].split()[: limit - 1]).rstrip(".,") + "."
        prompt = f"In at most {limit} words, tell me about {topic}."
        chosen, rejected = short, " ".join(_FACTS[topic])
        return prompt, chosen, rejected  # the chosen reply is shorter by construction
    else:
        facts = rng.sample(_FACTS[topic], 3)
        prompt = f"List three facts about {topic} as bullet points."
        chosen, rejected = "\n".join(f"- {f}" for f in facts), " ".join(facts)
    if chosen_longer:
        return prompt, _pad(chosen, rng, extra), rejected
    return prompt, chosen, _pad(rejected, rng, extra)


def demo_pairs(
    split: Literal["train", "test", "balanced"] = "train", n: int = 2000, seed: int = 0
) -> list[PreferencePair]:
    """``n`` demo pairs of ``split``; seeds differ per split so splits do not share draws.

    >>> pairs = demo_pairs("balanced", n=400)
    >>> longer = sum(len(p.chosen) > len(p.rejected) for p in pairs) / len(pairs)
    >>> 0.4 < longer < 0.6, len({p.chosen for p in pairs}) > 300
    (True, True)
    """
    rng = random.Random(f"{split}-{seed}")
    # word_limit (a quarter of pairs) always has the shorter reply chosen, so the other tasks
    # pad the chosen reply in 14/15 of pairs (~70% overall) or 2/3 of them (50% overall).
    p_longer = 14 / 15 if split in ("train", "test") else 2 / 3
    pairs = []
    for i in range(n):
        task = DEMO_TASKS[i % len(DEMO_TASKS)]
        prompt, chosen, rejected = _make(task, rng, rng.random() < p_longer)
        pairs.append(PreferencePair((Message("user", prompt),), chosen, rejected, source=f"demo:{split}:{i}:{task}"))
    rng.shuffle(pairs)
    return pairs
