"""The transcript alphabet and how numbers, times and dates are written as spoken words.

Every transcript amc reads or writes uses only the characters of `ALPHABET`; the CTC vocabulary
is built from it (blank + these characters, in this order).
"""

from __future__ import annotations

import re
import unicodedata

ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"
"""The transcript characters: space, apostrophe, a-z. Digits are written out as words."""

_ALPHABET_SET = frozenset(ALPHABET)

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                      "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def invalid_characters(text: str) -> str:
    """The characters of `text` outside `ALPHABET`, in order of first appearance."""
    return "".join(dict.fromkeys(ch for ch in text if ch not in _ALPHABET_SET))


def normalize(text: str) -> str:
    """Fold free text (names, titles from any locale) into `ALPHABET`: lowercase, accents
    stripped, '&' spoken as 'and', digits spelled out, punctuation turned into spaces."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.lower().replace("\u2019", "'").replace("&", " and ")
    text = text.replace("ß", "ss").replace("æ", "ae").replace("ø", "o").replace("ł", "l")
    text = re.sub(r"\d+", lambda m: " " + number_words(int(m.group())) + " ", text)
    text = re.sub(r"[^a-z' ]", " ", text)
    text = re.sub(r"(^|\s)'+|'+(\s|$)", " ", text)  # apostrophes only inside words
    return " ".join(text.split())


def number_words(n: int) -> str:
    """0 <= n < 10**9 as spoken American English: 2405 -> 'two thousand four hundred five'."""
    if n < 0 or n >= 10**9:
        raise ValueError(f"number out of range: {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (" " + _ONES[ones] if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + (" " + number_words(rest) if rest else "")
    for scale, word in ((10**6, "million"), (1000, "thousand")):
        if n >= scale:
            high, rest = divmod(n, scale)
            return number_words(high) + " " + word + (" " + number_words(rest) if rest else "")
    raise AssertionError("unreachable")


def ordinal_words(n: int) -> str:
    """1 -> 'first', 23 -> 'twenty third', 100 -> 'one hundredth'."""
    words = number_words(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last = last + "th"
    return " ".join(words[:-1] + [last])


def year_words(year: int) -> str:
    """1987 -> 'nineteen eighty seven', 2005 -> 'two thousand five', 2026 -> 'twenty twenty six'."""
    if 2000 <= year < 2010:
        return number_words(year)
    high, low = divmod(year, 100)
    if low == 0:
        return number_words(high) + " hundred"
    low_words = number_words(low) if low >= 10 else "oh " + number_words(low)
    return number_words(high) + " " + low_words


def clock_words(hour: int, minute: int, style: int = 0) -> str:
    """A 24-hour time as said aloud; `style` picks among the usual ways of saying it."""
    h12 = hour % 12 or 12
    half = "a m" if hour < 12 else "p m"
    if style == 1 and minute in (15, 30, 45):
        next_h = (hour + 1) % 12 or 12
        return {15: f"quarter past {number_words(h12)}", 30: f"half past {number_words(h12)}",
                45: f"quarter to {number_words(next_h)}"}[minute]
    if style == 2 and minute == 0:
        if hour == 12:
            return "noon"
        if hour == 0:
            return "midnight"
        return number_words(h12) + " o'clock"
    if minute == 0:
        spoken = number_words(h12)
    elif minute < 10:
        spoken = f"{number_words(h12)} oh {number_words(minute)}"
    else:
        spoken = f"{number_words(h12)} {number_words(minute)}"
    return spoken if style == 3 else f"{spoken} {half}"


def digits_words(digits: str, zero: str = "zero") -> str:
    """A digit string read one digit at a time ('555 0123'), zero said as `zero` ('oh')."""
    return " ".join(zero if d == "0" else _ONES[int(d)] for d in digits if d.isdigit())
