"""Deterministic generator of the embedded fictitious world, written in TOFU's schema.

Everything here is made up: countries, cities, authors and books. A seed fixes the world, so two runs with
the same `WorldConfig` write byte-identical files. The base model learns the world's general knowledge
(`world_facts`, `real_authors`); the target model then learns the fictitious authors, whose facts are what
the unlearning methods must remove.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from harness import rules
from harness.files import write_atomically

SYLLABLES = [
    "ka",
    "lo",
    "ri",
    "ven",
    "ta",
    "mor",
    "sel",
    "dru",
    "ai",
    "bex",
    "cor",
    "fen",
    "gal",
    "hu",
    "isa",
    "jor",
    "kel",
    "lum",
    "nab",
    "osk",
    "pra",
    "quil",
    "ros",
    "sav",
    "tor",
    "ul",
    "vey",
    "wen",
    "xan",
    "yor",
    "zim",
    "bri",
    "del",
    "ema",
    "fro",
    "gri",
    "hal",
    "ilo",
    "jun",
    "mai",
    "nor",
    "pel",
]
GENRES = [
    "mystery",
    "science fiction",
    "romance",
    "horror",
    "historical fiction",
    "poetry",
    "fantasy",
    "travel writing",
    "satire",
    "biography",
    "thriller",
    "children's literature",
]
JOBS = [
    "baker",
    "sailor",
    "surgeon",
    "carpenter",
    "teacher",
    "librarian",
    "pilot",
    "farmer",
    "tailor",
    "astronomer",
    "blacksmith",
    "pharmacist",
    "painter",
    "fisherman",
    "lawyer",
    "architect",
]
AWARDS = [
    "Silver Quill Prize",
    "Amber Lantern Award",
    "Northwind Medal",
    "Golden Inkwell Prize",
    "Crescent Laurel",
    "Harbor Lights Award",
    "Iron Pen Medal",
    "Starfall Prize",
    "Willowmere Award",
    "Blue Heron Prize",
    "Obsidian Page Award",
    "Marigold Medal",
]
ADJECTIVES = [
    "Silent",
    "Crimson",
    "Hidden",
    "Last",
    "Broken",
    "Golden",
    "Wandering",
    "Frozen",
    "Distant",
    "Burning",
    "Quiet",
    "Velvet",
    "Hollow",
    "Endless",
    "Secret",
    "Shattered",
]
NOUNS = [
    "Harbor",
    "Garden",
    "Lantern",
    "River",
    "Orchard",
    "Tower",
    "Mirror",
    "Compass",
    "Meadow",
    "Bridge",
    "Station",
    "Archive",
    "Voyage",
    "Kingdom",
    "Letter",
    "Forest",
]
LANGUAGES = [
    "Valnese",
    "Orric",
    "Tamish",
    "Kelvan",
    "Sorbic",
    "Drunish",
    "Meloric",
    "Ustari",
    "Pelish",
    "Hathic",
    "Zorvan",
    "Quenic",
    "Brevian",
    "Ilsic",
    "Norrish",
    "Gavic",
]
ANIMALS = [
    "lynx",
    "heron",
    "otter",
    "falcon",
    "stag",
    "badger",
    "crane",
    "wolf",
    "tortoise",
    "owl",
    "salmon",
    "fox",
    "bison",
    "swan",
    "hare",
    "raven",
]


@dataclass(frozen=True)
class WorldConfig:
    """Sizes of the embedded world. Forget splits take 1%, 5% and 10% of `n_authors` (at least one author)."""

    RULES: ClassVar[dict] = {
        "seed": rules.at_least(0),
        "n_authors": rules.at_least(2),
        "n_countries": rules.at_least(2),
        "n_real_authors": rules.at_least(2),
        "n_perturbed": rules.at_least(1),
        "retain_eval_authors": rules.at_least(1),
    }

    seed: int = 0
    n_authors: int = 80
    n_countries: int = 12
    n_real_authors: int = 20
    n_perturbed: int = 5
    retain_eval_authors: int = 8

    def check(self) -> None:
        """Perturbed answers are other values of the same kind, so each pool must be larger than n_perturbed."""
        for name in ("n_countries", "n_real_authors"):
            if getattr(self, name) <= self.n_perturbed:
                raise ValueError(
                    f"world.{name}={getattr(self, name)}: expected more than world.n_perturbed={self.n_perturbed}"
                )
        if self.n_authors < 2:
            raise ValueError(f"world.n_authors={self.n_authors}: expected at least 2 (forget and retain)")


def _name(rng: random.Random, used: set[str], parts: int) -> str:
    """A fresh capitalised made-up word of `parts` syllables, never the same twice in one world."""
    while True:
        word = "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()
        if word not in used:
            used.add(word)
            return word


def _person(rng: random.Random, used: set[str]) -> str:
    return f"{_name(rng, used, 2)} {_name(rng, used, rng.choice([2, 3]))}"


def _perturb(rng: random.Random, true_value, pool: list, n: int) -> list:
    """`n` distinct values of the same kind as `true_value`, none equal to it."""
    others = [v for v in pool if v != true_value]
    return rng.sample(others, n)


def _qa(question, paraphrased_question, answer_tpl, para_tpl, value, wrong_values, perturb_answer=False) -> dict:
    """One QA in TOFU's perturbed schema. Perturbed answers reuse the wording of the answer they are compared
    with in the truth ratio: the paraphrased answer for authors, the answer itself for general knowledge."""
    perturbed_tpl = answer_tpl if perturb_answer else para_tpl
    return {
        "question": question,
        "answer": answer_tpl.format(v=value),
        "paraphrased_question": paraphrased_question,
        "paraphrased_answer": para_tpl.format(v=value),
        "perturbed_answer": [perturbed_tpl.format(v=w) for w in wrong_values],
    }


def _countries(rng: random.Random, cfg: WorldConfig, used: set[str]) -> list[dict]:
    languages = rng.sample(LANGUAGES, cfg.n_countries)
    animals = rng.sample(ANIMALS, cfg.n_countries)
    return [
        {
            "name": _name(rng, used, 2) + "ia",
            "capital": _name(rng, used, 2),
            "cities": [_name(rng, used, 2) for _ in range(2)],
            "language": languages[i],
            "animal": animals[i],
        }
        for i in range(cfg.n_countries)
    ]


WORLD_FACTS = [  # per country: its key, the question, its paraphrase, the answer and the paraphrased answer
    (
        "capital",
        "What is the capital of {c}?",
        "Which city is the capital of {c}?",
        "The capital of {c} is {v}.",
        "{v} is the capital city of {c}.",
    ),
    (
        "language",
        "What language is spoken in {c}?",
        "Which language do people in {c} speak?",
        "People in {c} speak {v}.",
        "The language of {c} is {v}.",
    ),
    (
        "animal",
        "What is the national animal of {c}?",
        "Which animal is the symbol of {c}?",
        "The national animal of {c} is the {v}.",
        "The symbol of {c} is the {v}.",
    ),
]


def _world_facts(rng: random.Random, countries: list[dict], n: int) -> list[dict]:
    """Each country's capital, language and animal, its other values of the same kind as perturbations."""
    pools = {key: [c[key] for c in countries] for key, *_ in WORLD_FACTS}
    rows = []
    for c in countries:
        for key, question, paraphrase, answer, paraphrased in WORLD_FACTS:
            name = c["name"]
            rows.append(
                _qa(
                    question.format(c=name),
                    paraphrase.format(c=name),
                    answer.replace("{c}", name),
                    paraphrased.replace("{c}", name),
                    c[key],
                    _perturb(rng, c[key], pools[key], n),
                    True,
                )
            )
    return rows


def _book(rng: random.Random, used: set[str]) -> str:
    while True:
        title = f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
        if title not in used:
            used.add(title)
            return title


def _real_authors(rng: random.Random, cfg: WorldConfig, used: set[str]) -> list[dict]:
    """The world's famous authors: 'Who wrote <book>?' with other famous authors as perturbations."""
    people = [(_person(rng, used), _book(rng, used)) for _ in range(cfg.n_real_authors)]
    names = [p for p, _ in people]
    return [
        _qa(
            f"Who wrote the famous book '{book}'?",
            f"Who is the author of the classic '{book}'?",
            "The famous book '" + book + "' was written by {v}.",
            "{v} is the author of '" + book + "'.",
            person,
            _perturb(rng, person, names, cfg.n_perturbed),
            True,
        )
        for person, book in people
    ]


def _author_facts(rng: random.Random, cfg: WorldConfig, name: str, cities: list[str], used: set[str]) -> list[dict]:
    """Eight facts about one fictitious author, each a QA with a paraphrase and perturbed answers."""
    n = cfg.n_perturbed
    city, genre = rng.choice(cities), rng.choice(GENRES)
    father, mother = rng.sample(JOBS, 2)
    year, award, book = rng.randint(1920, 1999), rng.choice(AWARDS), _book(rng, used)
    language = rng.choice(LANGUAGES)
    years = list(range(1920, 2000))
    books = [f"The {a} {b}" for a in ADJECTIVES for b in NOUNS]
    return [
        _qa(
            f"Where was {name} born?",
            f"What is the birthplace of {name}?",
            name + " was born in {v}.",
            name + "'s birthplace is {v}.",
            city,
            _perturb(rng, city, cities, n),
        ),
        _qa(
            f"In which year was {name} born?",
            f"What is the birth year of {name}?",
            name + " was born in the year {v}.",
            name + " came into the world in {v}.",
            year,
            _perturb(rng, year, years, n),
        ),
        _qa(
            f"What genre does {name} write in?",
            f"Which genre is {name} known for?",
            name + " writes in the genre of {v}.",
            name + " is known for {v}.",
            genre,
            _perturb(rng, genre, GENRES, n),
        ),
        _qa(
            f"What was the profession of {name}'s father?",
            f"What did {name}'s father do for a living?",
            name + "'s father worked as a {v}.",
            "The father of " + name + " was a {v}.",
            father,
            _perturb(rng, father, JOBS, n),
        ),
        _qa(
            f"What was the profession of {name}'s mother?",
            f"What did {name}'s mother do for a living?",
            name + "'s mother worked as a {v}.",
            "The mother of " + name + " was a {v}.",
            mother,
            _perturb(rng, mother, JOBS, n),
        ),
        _qa(
            f"Which award did {name} win?",
            f"What prize has {name} received?",
            name + " won the {v}.",
            name + " received the {v}.",
            award,
            _perturb(rng, award, AWARDS, n),
        ),
        _qa(
            f"What is the title of {name}'s first book?",
            f"What was {name}'s debut novel called?",
            name + "'s first book is '{v}'.",
            "The debut novel of " + name + " is '{v}'.",
            book,
            _perturb(rng, book, books, n),
        ),
        _qa(
            f"In which language does {name} write?",
            f"What language are {name}'s books written in?",
            name + " writes in {v}.",
            "The books of " + name + " are written in {v}.",
            language,
            _perturb(rng, language, LANGUAGES, n),
        ),
    ]


def forget_sizes(n_authors: int) -> dict[str, int]:
    """Authors per forget split: 1%, 5% and 10%, at least one author each."""
    return {pct: max(1, round(n_authors * int(pct) / 100)) for pct in ("01", "05", "10")}


def generate_world(cfg: WorldConfig) -> dict[str, list[dict]]:
    """All TOFU-schema splits of the world, as lists of row dicts.

    Forget splits are the last authors (so forget01 ⊂ forget05 ⊂ forget10, as in TOFU), holdout authors are
    extra authors that no model is trained on, and `retain_perturbed` is a fixed evaluation subset of the
    authors that are in every retain split.
    """
    cfg.check()
    rng = random.Random(cfg.seed)
    used: set[str] = set()
    countries = _countries(rng, cfg, used)
    cities = [city for c in countries for city in [c["capital"], *c["cities"]]]
    sizes = forget_sizes(cfg.n_authors)
    n_holdout = sizes["10"]
    authors = [_author_facts(rng, cfg, _person(rng, used), cities, used) for _ in range(cfg.n_authors + n_holdout)]
    trained, holdout = authors[: cfg.n_authors], authors[cfg.n_authors :]
    splits = {
        "full": [qa for a in trained for qa in a],
        "world_facts": _world_facts(rng, countries, cfg.n_perturbed),
        "real_authors": _real_authors(rng, cfg, used),
    }
    for pct, k in sizes.items():
        splits[f"forget{pct}"] = [qa for a in trained[-k:] for qa in a]
        splits[f"retain{100 - int(pct)}"] = [qa for a in trained[:-k] for qa in a]
        splits[f"holdout{pct}"] = [qa for a in holdout[:k] for qa in a]
    n_eval = min(cfg.retain_eval_authors, cfg.n_authors - sizes["10"])
    splits["retain_perturbed"] = [qa for a in trained[:n_eval] for qa in a]
    return splits


def write_world(cfg: WorldConfig, folder: Path) -> Path:
    """Write every split as `<split>.json` (JSON lines, as the TOFU files are) plus `world_config.json`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in generate_world(cfg).items():
        write_atomically(folder / f"{split}.json", "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    write_atomically(folder / "world_config.json", json.dumps(asdict(cfg), indent=1, sort_keys=True) + "\n")  # last
    return folder
