"""Caption and metadata bytes to text: UTF-8 first, then a stated fallback chain.

Why not refuse text that is not UTF-8 (what the importers did before): web corpora mix
encodings, and a good image must not be lost because its alt-text was saved as
windows-1252 by an old crawler. Why not trust a charset detector alone: on caption-length
text a detector guesses wildly (charset-normalizer reads Latin-1 "café au lait" as cp1006,
"cafﻠ au lait", and "niño en la playa" as Big5). The chain, in order:

1. **UTF-8** (a leading BOM dropped): the standard, and almost every caption.
2. **A UTF-32 or UTF-16 byte-order mark**: what Windows Notepad saves as "Unicode".
3. **windows-1252**, when charset-normalizer finds it reads as cleanly as its best
   candidate: browsers decode pages labelled ISO-8859-1 or ASCII as windows-1252 (WHATWG
   Encoding Standard), so it is the commonest legacy encoding of web alt-text, and short
   Western text is ambiguous between it and its neighbours.
4. **charset-normalizer's best candidate among the WHATWG legacy encodings** (Central
   European, Cyrillic, Greek, Turkish, Japanese, Chinese, Korean ...), when one reads cleanly.
5. Otherwise the text is refused, naming the bad bytes: it is not text in any of them.

The encoding used is returned with the text, so the caption's provenance records it and
the import report lists every text that was not UTF-8: a wrong guess can be found and
fixed. On a hand-made set of 24 short captions in 13 legacy encodings this chain read 19
correctly; windows-1252 alone read 10, charset-normalizer alone 11 (16 when limited to the
WHATWG encodings). Single words in non-Latin scripts stay ambiguous whatever reads them.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from backend.ingest.items import ItemError, describe_unicode_error

UTF8 = "utf-8"
WESTERN = "cp1252"
# The WHATWG Encoding Standard's legacy encodings, by Python codec name (UTF-16 is matched by
# its BOM in step 2). Limiting the detector to these keeps it from answering with an EBCDIC or
# DOS code page that no web page is labelled with.
LEGACY_WEB_ENCODINGS = (
    "cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258",
    "cp874", "cp866", "iso8859_2", "iso8859_3", "iso8859_4", "iso8859_5", "iso8859_6",
    "iso8859_7", "iso8859_8", "iso8859_10", "iso8859_13", "iso8859_14", "iso8859_15",
    "iso8859_16", "koi8_r", "koi8_u", "mac_roman", "mac_cyrillic", "gb18030", "big5",
    "euc_jp", "iso2022_jp", "shift_jis", "euc_kr",
)  # fmt: skip
_BOMS = (  # UTF-32 first: its little-endian BOM begins with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str  # "utf-8", or the codec the text was read as

    @property
    def is_utf8(self) -> bool:
        return self.encoding == UTF8


def _legacy(raw: bytes) -> DecodedText | None:
    """Steps 3 and 4 of the chain; None when no legacy web encoding reads ``raw`` cleanly."""
    from charset_normalizer import from_bytes  # imported on first use: most imports never need it

    matches = from_bytes(raw, cp_isolation=list(LEGACY_WEB_ENCODINGS))
    best = matches.best()
    try:
        western: str | None = raw.decode(WESTERN)
    except UnicodeDecodeError:
        western = None  # one of the five bytes windows-1252 leaves undefined
    if western is not None:
        for match in matches:
            # could_be_from_charset: every encoding that gives this match's very text
            if WESTERN in match.could_be_from_charset and (best is None or match.chaos <= best.chaos):
                return DecodedText(western, WESTERN)
    if best is None:
        return None
    return DecodedText(str(best), best.encoding)


def decode_text(raw: bytes, what: str = "text") -> DecodedText:
    """``raw`` as text by the chain above; ItemError naming ``what`` when nothing reads it."""
    try:  # "utf-8", then the BOM dropped: the "utf-8-sig" codec is written in Python, and slow
        text = raw.decode(UTF8)
        return DecodedText(text[1:] if text.startswith("\ufeff") else text, UTF8)
    except UnicodeDecodeError as exc:
        first_error = exc
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            try:
                return DecodedText(raw.decode(codec), codec)
            except UnicodeDecodeError:
                break
    guessed = _legacy(raw)
    if guessed is not None:
        return guessed
    raise ItemError(
        f"{what} is not text: not valid UTF-8 ({describe_unicode_error(first_error)}) "
        "and no legacy web encoding reads it cleanly"
    )


def unpaired_surrogate(text: str) -> str | None:
    """The first lone UTF-16 surrogate in ``text`` (as ``\\udXXX``), or None.

    Why: JSON's ``"\\ud800"`` escape and non-UTF-8 file names (read with
    ``surrogateescape``) give strings that SQLite, the browser and stdout cannot encode.
    """
    if text.isascii():
        return None
    try:
        text.encode(UTF8)
    except UnicodeEncodeError as exc:
        return text[exc.start].encode("unicode_escape").decode("ascii")
    return None


def printable_name(name: str) -> str:
    """A file or member name as storable text: bytes that were not UTF-8 (kept by Python as
    surrogate escapes) become ``\\xNN``, so ``café`` saved in Latin-1 is shown ``caf\\xe9``.

    Why: the name becomes ``Image.original_key`` and a report label; a surrogate in it made
    the insert fail, losing a good image over its file name.
    """
    if unpaired_surrogate(name) is None:
        return name
    try:
        raw = name.encode(UTF8, "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file name byte produced
        return name.encode(UTF8, "backslashreplace").decode(UTF8)
    return raw.decode(UTF8, "backslashreplace")
