"""The voice-assistant grammar: templates per domain whose slots draw from the open vocabulary,
with numbers, times and dates written as spoken words, optional wake words and politeness, and
now and then two requests joined into one utterance."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from amc.model.corpus.text import (
    MONTHS,
    WEEKDAYS,
    clock_words,
    digits_words,
    invalid_characters,
    normalize,
    number_words,
    ordinal_words,
    year_words,
)
from amc.model.corpus.vocabulary import APPS, DEVICES, GENRES, GROCERIES, RELATIONS, ROOMS, WEATHER_WORDS, Vocabulary

TEMPLATES: dict[str, list[str]] = {
    "timers": [
        "set a timer for {duration}", "start a {duration} timer", "timer {duration}",
        "set a {food} timer for {duration}", "how much time is left on my timer",
        "how much time is left on the {food} timer", "cancel the {duration} timer",
        "add {duration} to the timer", "pause the timer", "stop all timers",
        "set a timer called {word} for {duration}", "start a countdown from {small_number}",
        "remind me in {duration} to check the {food}",
    ],
    "alarms": [
        "set an alarm for {time}", "wake me up at {time}", "wake me up at {time} {day_ref}",
        "set an alarm for {time} {day_ref}", "turn off my {time} alarm",
        "change my {time} alarm to {time}", "snooze for {minutes}", "what alarms do i have",
        "set a repeating alarm for {time} every {weekday}", "delete all my alarms",
        "set an alarm called {word} for {time}",
    ],
    "music": [
        "play {song} by {artist}", "play {song}", "play some {genre}", "play {genre} in the {room}",
        "play the album {song}", "play music by {artist}", "shuffle my {word} playlist",
        "add this song to my {word} playlist", "skip this song", "play the next track",
        "turn the volume up to {percent}", "set the volume to {small_number}",
        "who sings {song}", "play {artist} radio", "play the podcast {song}",
        "resume the audiobook {song}", "play {song} by {artist} on {app}",
        "what song is this", "repeat this song", "play something like {artist}",
        "play the latest episode of {song}", "turn it down a little",
    ],
    "weather": [
        "what's the weather in {city}", "what's the weather like {day_ref}",
        "will it {weather_verb} in {city} {day_ref}", "is it going to be {weather} {day_ref}",
        "what's the temperature outside", "how hot will it be in {city} on {weekday}",
        "do i need an umbrella {day_ref}", "what's the forecast for {city} this weekend",
        "will it be {weather} in {country} on {date}", "what's the humidity in {city}",
        "when is sunset {day_ref}", "how cold is it in {city} right now",
    ],
    "home": [
        "turn on the {room} {device}", "turn off the {device} in the {room}",
        "dim the {room} lights to {percent}", "set the {room} lights to {color}",
        "set the thermostat to {temperature}", "turn the heat up to {temperature}",
        "is the {device} on", "lock the front door", "open the {room} blinds",
        "close the {device}", "turn off all the lights", "turn on the {device} at {time}",
        "set the {room} to {temperature}", "start the {device}", "switch off the {room} {device}",
        "make the {room} lights warmer", "turn the {device} off in {minutes}",
        "is the garage door open", "brighten the {room} by {percent}",
    ],
    "calling": [
        "call {person}", "call {person} on speaker", "call {relation}", "call {company}",
        "text {person} saying {message}", "send a message to {person} saying {message}",
        "tell {relation} {message}", "read my new messages", "did {person} call me",
        "dial {phone}", "call {phone}", "send {person} an email about the {word} {noun}",
        "reply to {person} {message}", "video call {person}", "call {person} at {company}",
        "what's {person}'s phone number", "redial the last number",
    ],
    "navigation": [
        "navigate to {address}", "directions to {address}", "how long will it take to get to {city}",
        "take me to {company} on {street}", "how far is {city} from here",
        "find a {shop} near {street}", "what's the traffic like on {street}",
        "avoid tolls on the way to {city}", "how do i get to {address} by bus",
        "share my location with {person}", "find parking near {address}",
        "when does the next train to {city} leave", "add a stop at {shop}",
        "drive to {relation}'s house", "what time will i arrive in {city}",
    ],
    "shopping": [
        "add {grocery} to my shopping list", "add {count} {grocery} to the list",
        "remove {grocery} from my shopping list", "what's on my shopping list",
        "order more {grocery}", "add {grocery} and {grocery} to my list",
        "how much does {grocery} cost at {company}", "reorder {grocery} from {company}",
        "track my package from {company}", "when will my order arrive",
        "buy {count} packs of {grocery}", "put {grocery} on the list for {weekday}",
    ],
    "calendar": [
        "what's on my calendar {day_ref}", "schedule a meeting with {person} on {date} at {time}",
        "remind me to call {person} at {time}", "remind me to buy {grocery} {day_ref}",
        "when is {person}'s birthday", "move my {time} meeting to {time}",
        "create an event called {word} {noun} on {date}", "cancel my meeting with {person}",
        "what time is my appointment with {relation}", "add {person}'s birthday on {date}",
        "remind me on {date} to pay the {word} bill", "am i free on {weekday} at {time}",
    ],
    "numbers": [
        "what's {number} plus {number}", "what's {number} times {small_number}",
        "what is {number} divided by {small_number}", "convert {number} {unit} to {unit}",
        "what's {percent} of {number}", "how many {unit} in a {unit_single}",
        "what's the square root of {number}", "what year was {person} born",
        "what happened in {year}", "how many days until {date}", "what's {number} minus {number}",
        "what day is {date} {year}", "how old is someone born in {year}",
    ],
    "questions": [
        "what time is it", "what time is it in {city}", "what's the date {day_ref}",
        "who is {person}", "spell {word}", "what does {word} mean", "how do you spell {last_name}",
        "tell me about {company}", "what's the capital of {country}", "how far away is {country}",
        "open {app}", "launch {app} on the tv", "what's the news {day_ref}", "tell me a joke",
        "what's the score of the {city} game", "translate {word} into {language}",
        "how do you say {word} in {language}", "when does {company} close {day_ref}",
        "find a recipe for {food}", "how many calories are in {grocery}",
    ],
}

PREFIXES = ["hey computer", "okay computer", "um", "uh", "please", "could you", "can you",
            "would you please", "hey", "so", "alright", "i want to", "i'd like to", "hmm",
            "excuse me", "quick question", "hey there"]
SUFFIXES = ["please", "thanks", "thank you", "right now", "for me", "now", "okay", "if you can",
            "as soon as possible", "real quick"]
MAX_WORDS = 20
"""Two requests are joined only while they stay within this many words."""
JOINERS = ["and", "and then", "and also", "then", "after that"]

SHOPS = ["pharmacy", "gas station", "coffee shop", "grocery store", "bakery", "hospital",
         "hardware store", "bank", "restaurant", "pizza place", "gym", "library", "post office",
         "parking garage", "car wash", "bookstore", "supermarket", "vet", "hotel", "park"]
FOODS = ["pasta", "rice", "eggs", "pizza", "cookies", "bread", "chicken", "tea", "potatoes",
         "cake", "roast", "laundry", "lasagna", "soup", "pie", "salmon", "muffins", "brownies"]
UNITS = ["miles", "kilometers", "pounds", "kilograms", "ounces", "grams", "feet", "meters",
         "inches", "cups", "liters", "gallons", "degrees fahrenheit", "degrees celsius", "yards"]
UNIT_SINGLE = ["mile", "kilometer", "pound", "kilogram", "foot", "meter", "gallon", "liter", "yard"]
LANGUAGES = ["spanish", "french", "german", "italian", "japanese", "chinese", "portuguese",
             "russian", "hindi", "arabic", "korean", "dutch", "swedish", "polish", "greek"]
MESSAGES = ["i'm running late", "i'll be there in {minutes}", "call me back", "see you at {time}",
            "don't forget the {grocery}", "happy birthday", "i'm on my way", "can you pick up {grocery}",
            "meet me at {company}", "the meeting moved to {time}", "i love you", "where are you",
            "dinner is ready", "let's meet on {street}", "thanks for the {word}", "running {minutes} late",
            "i left the {device} on", "can we talk {day_ref}", "bring {count} {grocery}",
            "i'm at {address}", "good luck with the {word} {noun}"]


def _duration(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return f"{number_words(rng.randint(1, 12))} hours" if rng.random() < .8 else "one hour"
    if kind == 1:
        h, m = rng.randint(1, 3), rng.randint(1, 59)
        return f"{number_words(h)} hour{'s' if h > 1 else ''} and {number_words(m)} minute{'s' if m > 1 else ''}"
    if kind == 2:
        return f"{number_words(rng.randint(5, 90))} seconds"
    if kind == 3:
        return rng.choice(["half an hour", "an hour and a half", "a minute", "ninety seconds",
                           "a quarter of an hour", "two and a half hours"])
    return _minutes(rng)


def _minutes(rng: random.Random) -> str:
    m = rng.randint(1, 120)
    return f"{number_words(m)} minute{'s' if m > 1 else ''}"


def _time(rng: random.Random) -> str:
    minute = rng.choice([0, 0, 15, 30, 45, rng.randrange(60)])
    return clock_words(rng.randrange(24), minute, style=rng.randrange(4))


def _date(rng: random.Random) -> str:
    month, day = rng.choice(MONTHS), rng.randint(1, 31 if rng.random() < .9 else 28)
    return rng.choice([f"{month} {ordinal_words(day)}", f"the {ordinal_words(day)} of {month}",
                       f"{rng.choice(WEEKDAYS)} {month} {ordinal_words(day)}",
                       f"{month} {number_words(day)}"])


def _day_ref(rng: random.Random) -> str:
    return rng.choice(["today", "tomorrow", "tonight", "this morning", "this afternoon",
                       "this evening", "on the weekend", f"on {rng.choice(WEEKDAYS)}",
                       f"next {rng.choice(WEEKDAYS)}", "the day after tomorrow", "next week"])


def _number(rng: random.Random) -> str:
    return number_words(int(10 ** rng.uniform(0, 6.3)))


def _phone(rng: random.Random) -> str:
    digits = "".join(str(rng.randrange(10)) for _ in range(rng.choice([7, 10, 10, 11])))
    return digits_words(digits, zero=rng.choice(["zero", "oh"]))


def _address(rng: random.Random, vocab: Vocabulary) -> str:
    street = rng.choice(vocab.streets)
    return rng.choice([f"{number_words(rng.randint(1, 9999))} {street}", street,
                       f"{street} in {rng.choice(vocab.cities)}"])


def _person(rng: random.Random, vocab: Vocabulary) -> str:
    return rng.choice([f"{rng.choice(vocab.first_names)} {rng.choice(vocab.last_names)}",
                       rng.choice(vocab.first_names), rng.choice(vocab.first_names),
                       f"{rng.choice(['doctor', 'mister', 'miss', 'missus'])} {rng.choice(vocab.last_names)}"])


def _temperature(rng: random.Random) -> str:
    return rng.choice([f"{number_words(rng.randint(55, 85))} degrees", number_words(rng.randint(16, 28)),
                       f"{number_words(rng.randint(16, 28))} degrees celsius"])


def _slot_fillers(vocab: Vocabulary) -> dict[str, Callable[[random.Random], str]]:
    words = vocab.words
    return {
        "duration": _duration, "minutes": _minutes, "time": _time, "date": _date,
        "day_ref": _day_ref, "number": _number, "phone": _phone,
        "temperature": _temperature,
        "small_number": lambda r: number_words(r.randint(1, 20)),
        "count": lambda r: number_words(r.randint(2, 12)),
        "percent": lambda r: f"{number_words(r.choice([5, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 100, r.randint(1, 100)]))} percent",
        "year": lambda r: year_words(r.randint(1800, 2040)),
        "weekday": lambda r: r.choice(WEEKDAYS),
        "person": lambda r: _person(r, vocab),
        "last_name": lambda r: r.choice(vocab.last_names),
        "relation": lambda r: r.choice(RELATIONS),
        "address": lambda r: _address(r, vocab),
        "street": lambda r: r.choice(vocab.streets),
        "city": lambda r: r.choice(vocab.cities),
        "country": lambda r: r.choice(vocab.countries),
        "company": lambda r: r.choice(vocab.companies),
        "song": lambda r: r.choice(vocab.song_titles),
        "artist": lambda r: r.choice(vocab.artists),
        "genre": lambda r: r.choice(GENRES),
        "word": lambda r: r.choice(words),
        "noun": lambda r: r.choice(["project", "meeting", "party", "trip", "report", "game",
                                    "dinner", "presentation", "class", "review", r.choice(words)]),
        "color": lambda r: r.choice(vocab.colors),
        "room": lambda r: r.choice(ROOMS), "device": lambda r: r.choice(DEVICES),
        "grocery": lambda r: r.choice(GROCERIES), "app": lambda r: r.choice(APPS),
        "shop": lambda r: r.choice(SHOPS), "food": lambda r: r.choice(FOODS),
        "unit": lambda r: r.choice(UNITS), "unit_single": lambda r: r.choice(UNIT_SINGLE),
        "language": lambda r: r.choice(LANGUAGES),
        "weather": lambda r: r.choice(WEATHER_WORDS),
        "weather_verb": lambda r: r.choice(["rain", "snow", "hail", "freeze", "storm", "be windy"]),
        "message": lambda r: r.choice(MESSAGES),
    }


_SLOT = re.compile(r"\{(\w+)\}")


class Grammar:
    """Draws transcripts. `sentence(rng)` returns (domain, text), text within `ALPHABET`."""

    def __init__(self, vocab: Vocabulary):
        self.fillers = _slot_fillers(vocab)
        self.domains = sorted(TEMPLATES)
        for domain, templates in TEMPLATES.items():  # every slot has a filler
            for template in templates + MESSAGES:
                for slot in _SLOT.findall(template):
                    if slot not in self.fillers:
                        raise KeyError(f"{domain}: template {template!r} has unknown slot {slot!r}")

    def _fill(self, template: str, rng: random.Random, depth: int = 0) -> str:
        def one(match: re.Match) -> str:
            value = self.fillers[match.group(1)](rng)
            return self._fill(value, rng, depth + 1) if depth < 2 and "{" in value else value
        return _SLOT.sub(one, template)

    def request(self, rng: random.Random) -> tuple[str, str]:
        domain = rng.choice(self.domains)
        return domain, self._fill(rng.choice(TEMPLATES[domain]), rng)

    def sentence(self, rng: random.Random) -> tuple[str, str]:
        domain, text = self.request(rng)
        if rng.random() < 0.15:  # two requests in one breath, if not too long together
            _, second = self.request(rng)
            joined = f"{text} {rng.choice(JOINERS)} {second}"
            if len(joined.split()) <= MAX_WORDS:
                text = joined
        if rng.random() < 0.3:
            text = f"{rng.choice(PREFIXES)} {text}"
        if rng.random() < 0.2:
            text = f"{text} {rng.choice(SUFFIXES)}"
        text = normalize(text)
        assert not invalid_characters(text), text
        return domain, text
