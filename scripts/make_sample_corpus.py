"""Regenerate the bundled sample corpus in Mozilla Common Voice's release layout.

Why this exists: the pipeline is built for Common Voice, but the real corpus cannot be
downloaded here (no Hugging Face Hub, no Common Voice site) and is far too big to commit.
Tests, benchmarks and the notebooks therefore run on a tiny stand-in that has the exact
on-disk shape of a Common Voice 17+ release, so every code path that reads a real release
(TSV columns, ``clips/*.mp3`` at 48 kHz, ``clip_durations.tsv``) is exercised for real.

The audio is synthesized with espeak-ng (several voice variants, speeds and pitches per
locale, standing in for distinct speakers) and encoded by ffmpeg to 48 kHz mono mp3, like
Common Voice. The sentences are everyday sentences written for this corpus. The TSVs are
deterministic; the mp3 bytes may differ between ffmpeg/LAME versions.

The corpus contains only good clips on purpose: tests that need bad input (corrupt audio,
missing files, bad rows) create it themselves in a temporary directory.

Usage:
    python scripts/make_sample_corpus.py [--out data/cv-corpus-sample]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# Common Voice 17+ column order of train/dev/test/validated.tsv.
CV_COLUMNS = (
    "client_id",
    "path",
    "sentence_id",
    "sentence",
    "sentence_domain",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accents",
    "variant",
    "locale",
    "segment",
)
SPLITS = ("train", "dev", "test")
# English also has a second held-out set, unseen.tsv: sentences none of whose words occur in train
# or dev, to show that fine-tuning on this corpus does not make the model forget other English.
EXTRA_SPLITS = {"en": ("unseen",)}
# Common Voice ships 48 kHz mono mp3; a modest bitrate keeps the committed corpus a few MB.
MP3_SAMPLE_RATE = 48000
MP3_BITRATE = "48k"
# Clips shorter than this are padded with trailing silence; longer ones fail the build, so the
# corpus stays within the 1.5-6 s range tests rely on for speed.
MIN_SECONDS = 1.5
MAX_SECONDS = 6.0
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "data" / "cv-corpus-sample"


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an espeak-ng voice variant plus speaking style."""

    espeak: str  # espeak-ng -v argument, e.g. "sv+m1"
    speed: int  # words per minute (espeak-ng -s)
    pitch: int  # 0-99 (espeak-ng -p)
    gender: str  # Common Voice 17 gender label
    age: str  # Common Voice age bucket

    @property
    def client_id(self) -> str:
        """128-hex-char id like Common Voice's, stable for this voice."""
        return hashlib.sha512(f"{self.espeak}:{self.speed}:{self.pitch}".encode()).hexdigest()


M, F = "male_masculine", "female_feminine"

VOICES = {
    "sv-SE": (
        Voice("sv+m1", 165, 45, M, "thirties"),
        Voice("sv+f2", 150, 62, F, "twenties"),
        Voice("sv+m3", 175, 35, M, "fifties"),
        Voice("sv+f4", 158, 72, F, "forties"),
    ),
    "it": (
        Voice("it+m2", 170, 42, M, "twenties"),
        Voice("it+f1", 155, 65, F, "thirties"),
        Voice("it+m4", 160, 30, M, "sixties"),
        Voice("it+f3", 165, 75, F, "teens"),
    ),
    "en": (
        Voice("en-us+m1", 165, 45, M, "thirties"),
        Voice("en+f2", 155, 65, F, "forties"),
        Voice("en-gb+m3", 170, 35, M, "twenties"),
        Voice("en-us+f4", 160, 72, F, "fifties"),
        Voice("en-gb-x-rp+m5", 160, 40, M, "sixties"),
        Voice("en-gb-scotland+f3", 150, 60, F, "teens"),
    ),
}

# Sentences per locale and split. sv-SE and it: 36 each, in split order 24 train, 6 dev, 6 test.
SENTENCES = {
    "sv-SE": (
        "Jag dricker kaffe varje morgon innan jobbet.",
        "Kan du stänga fönstret, det drar kallt?",
        "Vi ska åka till landet i helgen.",
        "Bussen var försenad på grund av snön.",
        "Hon läser en bok om svensk historia.",
        "Barnen leker i parken efter skolan.",
        "Glöm inte att köpa mjölk och bröd.",
        "Min bror bor i en liten stuga vid sjön.",
        "Det regnar nästan hela dagen i Göteborg.",
        "Vill du följa med på bio ikväll?",
        "Jag har tappat bort mina nycklar igen.",
        "Affären stänger klockan sex på lördagar.",
        "Vi åt middag hos mormor i söndags.",
        "Katten sover helst i solen på balkongen.",
        "Tåget till Stockholm går om tio minuter.",
        "Han cyklar till jobbet även på vintern.",
        "Kan jag få notan, tack?",
        "Det är dags att sätta på potatisen.",
        "Hösten är min favoritårstid.",
        "Vi behöver boka biljetter till sommaren.",
        "Grannen klipper gräset varje lördag förmiddag.",
        "Jag förstår inte vad du menar.",
        "Läkaren sa att jag skulle vila några dagar.",
        "Blommorna i trädgården har börjat slå ut.",
        "Var ligger närmaste apotek här i stan?",
        "Mina föräldrar firar trettio år som gifta.",
        "Hunden vill gå ut och leka i snön.",
        "Det luktar nybakat bröd i hela huset.",
        "Vi träffas utanför stationen klockan två.",
        "Hon sjunger i kör varje torsdag kväll.",
        "Jag glömde paraplyet hemma i morse.",
        "Sjön frös till is redan i november.",
        "Kan du hjälpa mig att bära lådorna?",
        "Många älskar att plocka blåbär i skogen.",
        "Lampan i köket har gått sönder.",
        "Vi ses på fredag efter jobbet.",
    ),
    "it": (
        "Ogni mattina prendo un caffè al bar sotto casa.",
        "Il treno per Milano è in ritardo di dieci minuti.",
        "Mia nonna prepara la pasta fatta in casa.",
        "Domani andiamo al mare con gli amici.",
        "Puoi chiudere la finestra, per favore?",
        "Non ho ancora finito di leggere quel libro.",
        "La farmacia è aperta fino alle otto.",
        "I bambini giocano nel parco dopo la scuola.",
        "Perché non vieni a cena da noi stasera?",
        "Ho dimenticato l'ombrello sull'autobus.",
        "Questa città è bellissima in primavera.",
        "Il gatto dorme sempre sul divano.",
        "Vorrei un chilo di mele e due limoni.",
        "Sabato scorso siamo andati a teatro.",
        "Mio fratello lavora in un ospedale a Torino.",
        "Quanto costa un biglietto per Roma?",
        "Fa molto caldo oggi, usciamo più tardi.",
        "La riunione è stata spostata a giovedì.",
        "Lei parla tre lingue molto bene.",
        "Abbiamo visitato un museo pieno di quadri antichi.",
        "Il negozio chiude per le vacanze ad agosto.",
        "Non riesco a trovare le chiavi della macchina.",
        "Stasera guardiamo un film alla televisione.",
        "La nostra squadra ha vinto la partita.",
        "Dove si trova la stazione più vicina?",
        "Ho comprato un vestito nuovo per la festa.",
        "Il medico mi ha consigliato di riposare.",
        "Le giornate si allungano a marzo.",
        "Ci vediamo davanti al cinema alle nove.",
        "Mia sorella studia medicina all'università.",
        "Il pane fresco profuma tutta la cucina.",
        "È già tardi, devo tornare a casa.",
        "Possiamo fare una passeggiata in centro?",
        "Questo tè è troppo amaro per me.",
        "In autunno le foglie diventano gialle e rosse.",
        "Grazie mille per il tuo aiuto.",
    ),
    # 96 train, 12 dev, 24 test (held out, words shared with training) and 24 unseen (no word of
    # train or dev: content words only, headline style), spoken by 6 voices in turn.
    "en": {
        "train": (
            "I usually walk to work when the weather is nice.",
            "Could you pass me the salt, please?",
            "The library closes early on Sundays.",
            "We are planning a trip to the mountains.",
            "My sister just adopted a small grey kitten.",
            "The bus was late again this morning.",
            "Please remember to turn off the lights.",
            "He reads the newspaper while eating breakfast.",
            "It has been raining all week long.",
            "Where did you buy that lovely blue jacket?",
            "The children are playing football in the garden.",
            "I need to buy milk, eggs and bread.",
            "Our neighbours are having a party tonight.",
            "She speaks three languages fluently.",
            "The meeting has been moved to Thursday afternoon.",
            "Let's meet outside the station at noon.",
            "This soup tastes much better with fresh herbs.",
            "My phone battery is almost empty.",
            "They painted the kitchen a warm yellow colour.",
            "The train to London leaves from platform four.",
            "I can't find my keys anywhere.",
            "We watched an old film last night.",
            "How long does it take to get there?",
            "The flowers in the park are finally blooming.",
            "My brother cooks dinner for the whole family on Fridays.",
            "The doctor told me to drink more water.",
            "We bought a new table for the living room.",
            "Can you open the window, it is very warm in here?",
            "The shop sells bread, cheese and fresh fish.",
            "Her little brother is learning to ride a bike.",
            "The train was full of people going to work.",
            "I left my coat in the car this morning.",
            "They walked along the river after lunch.",
            "The weather will be cold and windy tomorrow.",
            "Our teacher gave us a lot of homework today.",
            "I like to read a book before I go to sleep.",
            "The café on the corner makes very good coffee.",
            "We need to clean the house before the party.",
            "My father works at the hospital near the station.",
            "The kitten sleeps on the warm kitchen floor.",
            "She bought tickets for the concert on Saturday.",
            "The children walked to school in the rain.",
            "Please close the door when you leave the room.",
            "He forgot his phone at the office again.",
            "We had pizza for dinner last Friday.",
            "The garden looks beautiful in the summer.",
            "My mother grows tomatoes and beans in the garden.",
            "Could you help me find the bus station?",
            "The film starts at eight o'clock tonight.",
            "I drink a cup of tea every afternoon.",
            "Our family goes to the sea every summer.",
            "The old bridge over the river is closed.",
            "She keeps her keys in a small blue box.",
            "It is too cold to swim in the lake today.",
            "The baker opens his shop very early.",
            "My friends are coming to visit next week.",
            "He washed the car before the long trip.",
            "The new library has a lovely reading room.",
            "We waited for the bus for twenty minutes.",
            "The kitchen smells of fresh bread and coffee.",
            "I will call you when I get home.",
            "The dog sleeps under the table after dinner.",
            "She paints pictures of flowers and trees.",
            "The museum is open every day except Monday.",
            "My grandmother tells the best stories.",
            "We should buy some fruit at the market.",
            "The lights in the street come on at night.",
            "He plays the piano in the evening.",
            "The children are reading in the library.",
            "I need a new pair of shoes for work.",
            "The wind was very strong last night.",
            "We sat in the garden and talked for hours.",
            "The taxi is waiting outside the hotel.",
            "My sister works in a shop in town.",
            "Please put the milk back in the fridge.",
            "The snow covered the whole village in white.",
            "They are building a new school near the park.",
            "I usually have toast and eggs for breakfast.",
            "The cat likes to sit by the window.",
            "Our train arrives in London at nine.",
            "She called her mother after the meeting.",
            "The water in the river is very cold.",
            "We are going to the cinema on Saturday.",
            "He carried the heavy boxes to the car.",
            "The park is full of children in the summer.",
            "I lost my umbrella on the bus.",
            "The restaurant was busy on Friday night.",
            "Could you tell me the time, please?",
            "My brother plays football every Sunday.",
            "The sun is shining over the sea today.",
            "She opened the letter and smiled.",
            "We need more chairs for the party.",
            "The tea is too hot to drink.",
            "He walks the dog every morning before work.",
            "The baby is sleeping in the next room.",
            "They sold their old house last year.",
        ),
        "dev": (
            "He fixed the broken chair with some glue.",
            "Would you like a cup of tea?",
            "The shop on the corner sells fresh fruit.",
            "I forgot my umbrella at the office.",
            "The dog barks whenever someone rings the bell.",
            "Winter evenings are long and quiet here.",
            "My father drinks coffee at the kitchen table.",
            "The school is closed on Monday.",
            "We walked to the market in the morning.",
            "Her kitten plays with a small ball.",
            "The hotel has a garden by the river.",
            "I will buy the tickets for the train.",
        ),
        "test": (
            "She finished the puzzle in less than an hour.",
            "Can you help me carry these boxes upstairs?",
            "The river was frozen for most of January.",
            "We should leave before the traffic gets bad.",
            "My grandfather grows tomatoes in his garden.",
            "Thank you for coming to visit us.",
            "My sister reads a book in the garden every morning.",
            "The children ate bread and cheese at the park.",
            "Please turn off the lights in the kitchen.",
            "The train to the sea leaves at noon.",
            "Our neighbours bought a new car last week.",
            "He left his keys on the kitchen table.",
            "The weather is cold and windy at the station.",
            "We had coffee at the café near the library.",
            "My mother works at the school on Fridays.",
            "The dog is sleeping in the warm garden.",
            "I need to buy fresh fruit for the party.",
            "She called her brother from the hotel.",
            "The museum is closed on Sunday afternoon.",
            "They walked to the river in the rain.",
            "Could you open the door for the children, please?",
            "The bus to town was full this morning.",
            "He drinks a cup of tea before work.",
            "We watched a film with our family on Saturday.",
        ),
        "unseen": (
            "Purple elephants wade quietly beneath glaciers.",
            "Seven curious otters inspected abandoned canoes.",
            "Ancient volcanoes erupt rarely during autumn.",
            "Brilliant astronomers discovered distant galaxies.",
            "Hungry penguins chase silver sardines.",
            "Wooden violins sound marvellous indoors.",
            "Clever engineers designed lighter bicycles.",
            "Golden eagles circle above rocky cliffs.",
            "Chemistry students mixed bright orange liquids.",
            "Tiny insects devour juicy strawberries.",
            "Professional dancers rehearse twice weekly.",
            "Enormous whales migrate southward annually.",
            "Careful surgeons operate using robotic instruments.",
            "Silent archives attract thoughtful scholars.",
            "Farmers harvest pumpkins, carrots, potatoes.",
            "Thunderstorms damaged several wooden barns.",
            "Mountain goats climb steep slopes easily.",
            "Talented chefs prepare delicious pancakes.",
            "Volunteers planted numerous oak saplings.",
            "Electric scooters replaced noisy motorcycles.",
            "Mysterious footprints appeared overnight.",
            "Wise owls hunt mice silently.",
            "Colourful parrots imitate human voices.",
            "Gentle waves polish smooth pebbles.",
        ),
    },
}


@dataclass(frozen=True)
class Clip:
    """One row of a split TSV plus what is needed to synthesize its audio."""

    locale: str
    split: str
    sentence: str
    voice: Voice

    @property
    def path(self) -> str:
        """Common Voice style file name; the number is derived from the sentence for stability."""
        number = int(hashlib.sha256(f"{self.locale}|{self.sentence}".encode()).hexdigest(), 16)
        return f"common_voice_{self.locale}_{40000000 + number % 10_000_000}.mp3"

    def row(self) -> dict[str, str]:
        """The Common Voice 17 TSV row of this clip."""
        return {
            "client_id": self.voice.client_id,
            "path": self.path,
            "sentence_id": hashlib.sha256(self.sentence.encode()).hexdigest(),
            "sentence": self.sentence,
            "sentence_domain": "",
            "up_votes": "2",
            "down_votes": "0",
            "age": self.voice.age,
            "gender": self.voice.gender,
            "accents": "",
            "variant": "",
            "locale": self.locale,
            "segment": "",
        }


def split_sentences(locale: str) -> dict[str, tuple[str, ...]]:
    """{split: sentences} of a locale; a flat tuple is 24 train, 6 dev, 6 test in that order."""
    sentences = SENTENCES[locale]
    if isinstance(sentences, dict):
        return sentences
    assert len(sentences) == 36, f"{locale}: expected 36 sentences"
    return {"train": sentences[:24], "dev": sentences[24:30], "test": sentences[30:]}


def words(sentence: str) -> set[str]:
    """Lower-case words of a sentence, as a WER normalizer sees them."""
    return set(re.findall(r"[\w']+", sentence.lower()))


def plan_clips(locale: str) -> list[Clip]:
    """Assign every sentence of ``locale`` to its split and a voice (round-robin over voices)."""
    by_split, voices = split_sentences(locale), VOICES[locale]
    sentences = [s for split in by_split.values() for s in split]
    assert len(set(sentences)) == len(sentences), f"{locale}: duplicate sentences"
    for s in sentences:
        # The TSVs are written unquoted, as Common Voice's are; these characters would break them.
        assert not set(s) & set('\t\n"'), f"{locale}: bad character in {s!r}"
        assert 4 <= len(s.split()) <= 12, f"{locale}: sentence length out of range: {s!r}"
    clips, i = [], 0
    for split, chosen in by_split.items():
        for sentence in chosen:
            clips.append(Clip(locale, split, sentence, voices[i % len(voices)]))
            i += 1
    trained = {c.sentence for c in clips if c.split in ("train", "dev")}
    held_out = {c.sentence for c in clips if c.split not in ("train", "dev")}
    assert not held_out & trained, (
        f"{locale}: held-out sentences in train/dev: {held_out & trained}"
    )
    vocabulary = set().union(*(words(s) for s in trained))
    for sentence in by_split.get("unseen", ()):
        assert not words(sentence) & vocabulary, f"{locale}: {sentence!r} has trained words"
    assert len({c.path for c in clips}) == len(clips), f"{locale}: clip name collision"
    return clips


def synthesize(clip: Clip, out_path: Path) -> int:
    """Speak ``clip.sentence`` with espeak-ng, encode to 48 kHz mono mp3; return duration in ms."""
    v = clip.voice
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", v.espeak, "-s", str(v.speed), "-p", str(v.pitch)]
            + ["-w", str(wav), clip.sentence],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(wav)]
            + ["-af", f"apad=whole_dur={MIN_SECONDS}", "-ac", "1", "-ar", str(MP3_SAMPLE_RATE)]
            + ["-c:a", "libmp3lame", "-b:a", MP3_BITRATE, "-map_metadata", "-1"]
            + ["-fflags", "+bitexact", "-flags:a", "+bitexact", str(out_path)],
            check=True,
            capture_output=True,
        )
    ms = decoded_duration_ms(out_path)
    if not MIN_SECONDS * 1000 - 50 <= ms <= MAX_SECONDS * 1000:
        raise ValueError(f"{out_path.name}: {ms} ms is outside {MIN_SECONDS}-{MAX_SECONDS} s")
    return ms


def decoded_duration_ms(mp3: Path) -> int:
    """Duration of ``mp3`` as decoded (encoder padding trimmed), in whole milliseconds."""
    pcm = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(mp3)]
        + ["-f", "s16le", "-ac", "1", "-ar", str(MP3_SAMPLE_RATE), "-"],
        check=True,
        capture_output=True,
    ).stdout
    return round(len(pcm) / 2 / MP3_SAMPLE_RATE * 1000)


def write_tsv(path: Path, fieldnames: tuple[str, ...], rows: list[dict[str, str]]) -> None:
    """Write a tab-separated file the way Common Voice does (no quoting, ``\\n`` line ends)."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(
            f,
            fieldnames=fieldnames,
            delimiter="\t",
            lineterminator="\n",
            quoting=csv.QUOTE_NONE,
            escapechar="\\",
        )
        writer.writeheader()
        writer.writerows(rows)


def build_locale(out: Path, locale: str, jobs: int) -> dict[str, int]:
    """Synthesize and write one locale directory; return the number of clips per split."""
    clips = plan_clips(locale)
    locale_dir = out / locale
    # Rebuild from scratch so clips of removed sentences do not linger.
    if locale_dir.exists():
        shutil.rmtree(locale_dir)
    (locale_dir / "clips").mkdir(parents=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        durations = list(pool.map(lambda c: synthesize(c, locale_dir / "clips" / c.path), clips))
    splits = (*SPLITS, *EXTRA_SPLITS.get(locale, ()))
    for split in splits:
        write_tsv(
            locale_dir / f"{split}.tsv", CV_COLUMNS, [c.row() for c in clips if c.split == split]
        )
    # validated.tsv holds what Common Voice's would: train, dev and test (not the extra held-out
    # set, so that extracting "validated" never trains on it).
    validated = [c.row() for c in clips if c.split in SPLITS]
    write_tsv(locale_dir / "validated.tsv", CV_COLUMNS, validated)
    write_tsv(
        locale_dir / "clip_durations.tsv",
        ("clip", "duration[ms]"),
        [{"clip": c.path, "duration[ms]": str(ms)} for c, ms in zip(clips, durations, strict=True)],
    )
    return {split: sum(c.split == split for c in clips) for split in splits}


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="corpus root directory")
    parser.add_argument("--jobs", type=int, default=4, help="parallel synthesis processes")
    parser.add_argument(
        "--locale", action="append", choices=list(SENTENCES), help="only these (default: all)"
    )
    args = parser.parse_args(argv)
    for tool in ("espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found on PATH; it is needed to synthesize the corpus")
    args.out.mkdir(parents=True, exist_ok=True)
    for locale in args.locale or SENTENCES:
        counts = build_locale(args.out, locale, args.jobs)
        print(f"{locale}: " + ", ".join(f"{s}={n}" for s, n in counts.items()))


if __name__ == "__main__":
    main()
