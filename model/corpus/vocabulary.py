"""The open vocabulary that fills the grammar's slots: thousands of generated person names,
streets, cities, companies, song titles and artists (seeded Faker, several locales), plus fixed
lists for the closed classes (rooms, devices, groceries, apps)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from amc.model.corpus.text import normalize

# Locales whose names and places an English voice assistant meets; accents are folded away.
# (it_IT is left out: its city names come out of a set, so they change with PYTHONHASHSEED.)
_LOCALES = ["en_US", "en_GB", "en_IE", "en_AU", "en_CA", "en_IN", "en_NZ", "de_DE", "fr_FR",
            "es_ES", "nl_NL", "pl_PL", "sv_SE", "pt_BR"]

ROOMS = ["kitchen", "living room", "bedroom", "bathroom", "hallway", "garage", "office",
         "basement", "attic", "dining room", "nursery", "guest room", "porch", "patio",
         "laundry room", "kids' room", "study", "den", "garden", "front yard", "back yard",
         "upstairs hallway", "downstairs bathroom", "master bedroom", "workshop", "pantry"]
DEVICES = ["lights", "lamp", "ceiling fan", "heater", "air conditioner", "thermostat", "tv",
           "television", "speaker", "radio", "dishwasher", "washing machine", "dryer", "oven",
           "kettle", "coffee maker", "robot vacuum", "humidifier", "dehumidifier", "fireplace",
           "garage door", "front door lock", "blinds", "curtains", "sprinklers", "fan",
           "night light", "desk lamp", "floor lamp", "porch light", "water heater", "doorbell",
           "security camera", "alarm system", "air purifier", "projector", "printer"]
GROCERIES = ["milk", "eggs", "bread", "butter", "cheese", "yogurt", "apples", "bananas",
             "oranges", "lemons", "limes", "grapes", "strawberries", "blueberries", "tomatoes",
             "potatoes", "onions", "garlic", "carrots", "broccoli", "spinach", "lettuce",
             "cucumbers", "peppers", "mushrooms", "avocados", "rice", "pasta", "flour", "sugar",
             "salt", "olive oil", "vinegar", "coffee", "tea", "orange juice", "cereal", "oats",
             "peanut butter", "jam", "honey", "chicken", "beef", "salmon", "tuna", "bacon",
             "sausages", "ham", "tofu", "beans", "lentils", "chickpeas", "soup", "crackers",
             "chips", "cookies", "chocolate", "ice cream", "frozen peas", "pizza", "tortillas",
             "paper towels", "toilet paper", "dish soap", "laundry detergent", "shampoo",
             "toothpaste", "batteries", "light bulbs", "trash bags", "sponges", "aluminum foil",
             "sparkling water", "dog food", "cat litter", "diapers", "baby wipes", "napkins",
             "cinnamon", "basil", "oregano", "ketchup", "mustard", "mayonnaise", "soy sauce",
             "maple syrup", "almonds", "walnuts", "raisins", "granola bars", "hummus", "salsa"]
APPS = ["spotify", "youtube", "netflix", "podcasts", "the calendar", "the camera", "maps",
        "the weather app", "messages", "email", "the clock", "settings", "the calculator",
        "notes", "reminders", "the browser", "photos", "the news", "audible", "the radio"]
GENRES = ["jazz", "classical music", "rock", "hip hop", "country", "blues", "reggae", "folk",
          "heavy metal", "punk", "soul", "funk", "disco", "techno", "house music", "ambient",
          "lo fi beats", "pop", "indie rock", "bluegrass", "gospel", "opera", "salsa music",
          "k pop", "afrobeat", "drum and bass", "piano music", "chill music", "workout music",
          "sleep sounds", "rain sounds", "white noise", "study music", "dinner music"]
RELATIONS = ["mom", "dad", "grandma", "grandpa", "my sister", "my brother", "my wife",
             "my husband", "my boss", "my doctor", "the dentist", "my aunt", "my uncle",
             "my neighbor", "the babysitter", "my son", "my daughter", "my landlord",
             "my partner", "the office", "the plumber", "my friend"]
WEATHER_WORDS = ["rain", "snow", "sunny", "windy", "cloudy", "foggy", "stormy", "humid",
                 "freezing", "hot", "cold", "warm", "icy", "hail", "thunder"]


@dataclass(frozen=True)
class Vocabulary:
    """Slot fillers, each list already folded into the transcript alphabet and deduplicated."""

    first_names: list[str]
    last_names: list[str]
    streets: list[str]
    cities: list[str]
    countries: list[str]
    companies: list[str]
    song_titles: list[str]
    artists: list[str]
    words: list[str]
    colors: list[str]
    jobs: list[str]

    def size(self) -> int:
        """How many distinct words all the slot fillers use."""
        words: set[str] = set()
        for field in self.__dataclass_fields__:
            for entry in getattr(self, field):
                words.update(entry.split())
        return len(words)


def _unique(items, limit: int | None = None) -> list[str]:
    out = list(dict.fromkeys(i for i in (normalize(x) for x in items) if i))
    return out[:limit] if limit else out


def _split_camel(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)


def build_vocabulary(seed: int, per_locale: int = 300) -> Vocabulary:
    """A reproducible open vocabulary: the same seed (and Faker version) gives the same lists."""
    from faker import Faker  # imported here: only corpus generation needs it

    fakers = []
    for i, locale in enumerate(_LOCALES):
        fake = Faker(locale)
        fake.seed_instance(seed * 1000 + i)
        fakers.append(fake)
    english = [f for f, loc in zip(fakers, _LOCALES) if loc.startswith("en_")]
    rng = random.Random(f"vocabulary:{seed}")

    first = _unique(f.first_name() for f in fakers for _ in range(per_locale))
    last = _unique(f.last_name() for f in fakers for _ in range(per_locale))
    streets = _unique(f.street_name() for f in fakers for _ in range(per_locale // 2))
    cities = _unique(f.city() for f in fakers for _ in range(per_locale // 2))
    countries = _unique(fakers[0].country() for _ in range(400))
    companies = _unique(f.company() for f in english for _ in range(per_locale // 2))
    jobs = _unique(fakers[0].job().split(",")[0] for _ in range(600))
    colors = _unique(_split_camel(fakers[0].color_name()) for _ in range(400))
    words = _unique(fakers[0].words(nb=per_locale * 6))  # en_US: English words, not lorem ipsum
    nouns = _unique(f.catch_phrase().split()[-1] for f in english[:3] for _ in range(per_locale))
    adjectives = _unique(f.catch_phrase().split()[0] for f in english[:3] for _ in range(per_locale))

    def song_title() -> str:
        pattern = rng.randrange(6)
        w, n, a = rng.choice(words), rng.choice(nouns), rng.choice(adjectives)
        return [f"{a} {n}", f"the {w} {n}", f"{w} of the {n}", f"{w} {w if rng.random() < .2 else rng.choice(words)}",
                f"my {a} {w}", f"{n} in {rng.choice(cities)}"][pattern]

    def artist() -> str:
        pattern = rng.randrange(4)
        return [f"{rng.choice(first)} {rng.choice(last)}", f"the {rng.choice(nouns).removesuffix('s')}s",
                f"{rng.choice(last)}", f"{rng.choice(adjectives)} {rng.choice(words)}"][pattern]

    return Vocabulary(
        first_names=first, last_names=last, streets=streets, cities=cities, countries=countries,
        companies=companies, song_titles=_unique(song_title() for _ in range(3000)),
        artists=_unique(artist() for _ in range(1500)), words=words, colors=colors, jobs=jobs)
