"""The synthetic speech corpus: a voice-assistant grammar over an open vocabulary, spoken by
espeak-ng voices, degraded by noise, reverberation and gain, written as audio folders."""

from amc.model.corpus.text import ALPHABET

__all__ = ["ALPHABET"]
