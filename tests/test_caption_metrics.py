"""Caption metrics tokenised as the COCO caption toolkit does (issue 9, 7j).

The toolkit (pycocoevalcap) lower-cases and tokenises with the Stanford PTB tokenizer (Java,
CoreNLP 3.4.1, shipped inside the pycocoevalcap wheel) and drops its punctuation tokens.
``RECORDED`` holds that tokenizer's output, after the toolkit's punctuation removal, for 97
sentences (caption-like ones and the tricky cases: contractions, possessives, hyphenated
words, numbers, abbreviations, brackets, quotes, URLs, file names). Recorded with::

    java -cp stanford-corenlp-3.4.1.jar edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase FILE

in ``pycocoevalcap/tokenizer/``, then pycocoevalcap's ``PUNCTUATIONS`` filter. Where Java is
installed the same comparison also runs live. Known differences (a seeded 400-sentence
stress corpus of random word salad agreed on 397): runs of four or more periods, ``etc..``,
an e-mail address followed by ``!``.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from training.metrics import COCO_PUNCTUATIONS, bleu, cider, coco_tokenize, ptb_tokenize

RECORDED = [
    ('"A quote" at the start', 'a quote at the start'),
    ('"Quoted text" and \'single quotes\' here.', 'quoted text and single quotes here'),
    ('2 dogs & 1 cat', '2 dogs & 1 cat'),
    ("5-year-old boy's bike, well-known co-op; state-of-the-art.", "5-year-old boy 's bike well-known co-op state-of-the-art"),
    ('A  man   with   spaces\tand tab.', 'a man with spaces and tab'),
    ('A 10-foot-tall statue of a horse.', 'a 10-foot-tall statue of a horse'),
    ('A T-shirt with the word "LOVE" printed on it', 'a t-shirt with the word love printed on it'),
    ('A black-and-white photo (circa 1950) of a street; people walking...', 'a black-and-white photo -lrb- circa 1950 -rrb- of a street people walking'),
    ('A bowl of fruit: apples, bananas, and oranges.', 'a bowl of fruit apples bananas and oranges'),
    ('A boy (age 7) and his mom.', 'a boy -lrb- age 7 -rrb- and his mom'),
    ('A café with naïve décor and a piñata.', 'a café with naïve décor and a piñata'),
    ('A close-up of a flower (a rose, probably).', 'a close-up of a flower -lrb- a rose probably -rrb-'),
    ('A giraffe standing next to a tree in a zoo enclosure', 'a giraffe standing next to a tree in a zoo enclosure'),
    ('A kitchen with stainless steel appliances and granite counter tops.', 'a kitchen with stainless steel appliances and granite counter tops'),
    ('A laptop, a mouse, and a cup of coffee on a desk', 'a laptop a mouse and a cup of coffee on a desk'),
    ('A man riding a wave on top of a surfboard.', 'a man riding a wave on top of a surfboard'),
    ("A man wearing a hat and sunglasses -- he's smiling.", "a man wearing a hat and sunglasses he 's smiling"),
    ("A man's shadow on the wall.", "a man 's shadow on the wall"),
    ("A mother-in-law's gift.", "a mother-in-law 's gift"),
    ('A person on skis going down a snow covered slope.', 'a person on skis going down a snow covered slope'),
    ('A photo of a dog sitting on a couch, looking at the camera.', 'a photo of a dog sitting on a couch looking at the camera'),
    ('A pizza with pepperoni, olives & mushrooms', 'a pizza with pepperoni olives & mushrooms'),
    ('A plate with a sandwich, chips and a pickle.', 'a plate with a sandwich chips and a pickle'),
    ('A red cube to the left of a blue sphere.', 'a red cube to the left of a blue sphere'),
    ('A room with a TV, a sofa and a coffee-table.', 'a room with a tv a sofa and a coffee-table'),
    ('A screenshot of a web page at www.example.com', 'a screenshot of a web page at www.example.com'),
    ("A sign that says 'no parking'.", 'a sign that says no parking'),
    ('A small green circle above a large purple square, on a grey background.', 'a small green circle above a large purple square on a grey background'),
    ('A view from the top of the Eiffel Tower, Paris.', 'a view from the top of the eiffel tower paris'),
    ("A woman's hand holding a smartphone.", "a woman 's hand holding a smartphone"),
    ('A yellow school bus.', 'a yellow school bus'),
    ("A'b cat'  ''double'' ``backticks``", 'a b cat double backticks'),
    ('Aerial view of the city at night...', 'aerial view of the city at night'),
    ('An e-scooter near the café entrance.', 'an e-scooter near the café entrance'),
    ('An image of a cat & a dog @home #pets 100% cute :)', 'an image of a cat & a dog @home #pets 100 % cute :-rrb-'),
    ('An image of the number 42 painted on a wall', 'an image of the number 42 painted on a wall'),
    ('An old-fashioned clock tower against a blue sky.', 'an old-fashioned clock tower against a blue sky'),
    ("Black & white photograph of a 1920's street.", "black & white photograph of a 1920 's street"),
    ('Buy now!!! 50% off all shoes', 'buy now !!! 50 % off all shoes'),
    ("Can't won't shouldn't I'm you're we've they'd.", "ca n't wo n't should n't i 'm you 're we 've they 'd"),
    ('Caption ending with question?', 'caption ending with question'),
    ('DSC00042.JPG - holiday 2019', 'dsc00042.jpg holiday 2019'),
    ("Dr. Brown's car, a DeLorean, in 1985.", "dr. brown 's car a delorean in 1985"),
    ('Flowers in a vase -- red, white, and blue!', 'flowers in a vase red white and blue'),
    ("Foo's bar isn't open until 5 p.m.", "foo 's bar is n't open until 5 p.m."),
    ('He said, "It\'s fine."', "he said it 's fine"),
    ('Hello... world?! Really?!', 'hello world ?! really ?!'),
    ('I like plan b.', 'i like plan b.'),
    ('IMG_1234.jpg', 'img_1234 jpg'),
    ("It's a dog's life, isn't it? Yes -- they'll see.", "it 's a dog 's life is n't it yes they 'll see"),
    ("J. K. Rowling's book", "j. k. rowling 's book"),
    ("Meme: when you realize it's Monday", "meme when you realize it 's monday"),
    ('Mr Smith is here, Mr.', 'mr smith is here mr.'),
    ("Mr. Smith's U.S.A. trip at 5:30 p.m. on 12/25/2020.", "mr. smith 's u.s.a. trip at 5:30 p.m. on 12/25/2020"),
    ('Pink and blue cupcakes on a tray; some are half-eaten.', 'pink and blue cupcakes on a tray some are half-eaten'),
    ('Price: $19.99 / month', 'price $ 19.99 / month'),
    ('Section A. Next', 'section a. next'),
    ('Someone wrote "hello world" on the whiteboard.', 'someone wrote hello world on the whiteboard'),
    ('Temperature of 25°C outside', 'temperature of 25 ° c outside'),
    ("The 1990s-era TV's remote -- 50-year-old man.", "the 1990s-era tv 's remote 50-year-old man"),
    ('The U.K. flag is waving.', 'the u.k. flag is waving'),
    ("The children's toys are scattered across the floor.", "the children 's toys are scattered across the floor"),
    ("The dogs' owners are chatting.", 'the dogs owners are chatting'),
    ('The letter x. Then more', 'the letter x then more'),
    ('The sign reads: "STOP" -- next to a 3.5 m pole, cost $1,000.', 'the sign reads stop next to a 3.5 m pole cost $ 1,000'),
    ('The text "SALE" is written in bold black letters.', 'the text sale is written in bold black letters'),
    ('The train is at platform 9 3/4.', 'the train is at platform 9\xa03/4'),
    ("There's a bus parked at the curb.", "there 's a bus parked at the curb"),
    ('This is a long caption with many words , spaces before commas , and a final period .', 'this is a long caption with many words spaces before commas and a final period'),
    ('Three yellow triangles on a white background.', 'three yellow triangles on a white background'),
    ('Three yellow triangles; two red squares: one blue circle!', 'three yellow triangles two red squares one blue circle'),
    ("Two dogs don't like the cat's toy, it's true!", "two dogs do n't like the cat 's toy it 's true"),
    ('Two men playing frisbee in a park on a sunny day.', 'two men playing frisbee in a park on a sunny day'),
    ('Two people walking their dogs, one with a leash, one without.', 'two people walking their dogs one with a leash one without'),
    ('Vintage car, c. 1960', 'vintage car c. 1960'),
    ('Vitamin C.', 'vitamin c.'),
    ('a b. c', 'a b. c'),
    ('a cat laying on top of a laptop computer', 'a cat laying on top of a laptop computer'),
    ('e-mail me at john@example.com or visit http://example.com/page?x=1.', 'e-mail me at john@example.com or visit http://example.com/page?x=1'),
    ('end U.S.A.', 'end u.s.a.'),
    ('end p.m.', 'end p.m.'),
    ('ends with etc.', 'ends with etc.'),
    ('file.tar.gz', 'file.tar.gz'),
    ('mr. smith', 'mr. smith'),
    ('plan x. ok', 'plan x. ok'),
    ('see example.com now', 'see example.com now'),
    ('stock photo: red cube on white background', 'stock photo red cube on white background'),
    ('the 9 3/4 and 1/2 cup', 'the 9\xa03/4 and 1/2 cup'),
    ('the letter b. Then', 'the letter b then'),
    ('the letter i. Then', 'the letter i then'),
    ('the letter o. then', 'the letter o. then'),
    ('the letter x.', 'the letter x.'),
    ('the letter x. then', 'the letter x. then'),
    ('the letter y. Then', 'the letter y then'),
    ('the u.s. army', 'the u.s. army'),
    ('version 2.0.1 release', 'version 2.0.1 release'),
    ('{curly} [square] <angle> brackets', '-lcb- curly -rcb- -lsb- square -rsb- <angle> brackets'),
]


def test_coco_tokenisation_matches_the_recorded_java_tokenizer() -> None:
    wrong = [(text, coco_tokenize(text), want) for text, want in RECORDED if coco_tokenize(text) != want]
    assert not wrong, "\n".join(f"{t!r}: got {g!r}, toolkit {w!r}" for t, g, w in wrong)


def test_ptb_rules_that_matter_for_captions() -> None:
    assert ptb_tokenize("Two dogs don't like the cat's toy.") == [
        "two", "dogs", "do", "n't", "like", "the", "cat", "'s", "toy", ".",
    ]  # fmt: skip
    assert coco_tokenize("A black-and-white photo (circa 1950), 3.5 m tall!") == (
        "a black-and-white photo -lrb- circa 1950 -rrb- 3.5 m tall"  # the toolkit keeps lower-cased brackets
    )
    assert coco_tokenize("A café with naïve décor") == "a café with naïve décor"
    assert coco_tokenize("Mr. Smith at 5 p.m. in the U.S.A.") == "mr. smith at 5 p.m. in the u.s.a."


def _java_tokenizer() -> Path | None:
    spec = importlib.util.find_spec("pycocoevalcap.tokenizer.ptbtokenizer")
    if spec is None or spec.origin is None:
        return None
    jar = Path(spec.origin).parent / "stanford-corenlp-3.4.1.jar"
    return jar if shutil.which("java") and jar.is_file() else None


@pytest.mark.skipif(_java_tokenizer() is None, reason="needs java and pycocoevalcap's CoreNLP jar")
def test_coco_tokenisation_matches_the_live_java_tokenizer(tmp_path: Path) -> None:
    jar = _java_tokenizer()
    texts = [text for text, _ in RECORDED]
    source = tmp_path / "captions.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    cmd = ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase"]
    out = subprocess.run([*cmd, str(source)], capture_output=True, text=True, check=True, timeout=120)
    lines = out.stdout.splitlines()
    assert len(lines) == len(texts)
    for text, line in zip(texts, lines, strict=True):
        want = " ".join(w for w in line.rstrip().split(" ") if w not in COCO_PUNCTUATIONS)
        assert coco_tokenize(text) == want, text


def test_bleu_and_cider_are_the_toolkits_on_its_tokens() -> None:
    hyps = ["A man riding a wave on top of a surfboard.", "Two dogs don't like the cat's toy!"]
    refs = [
        ["a man riding a wave on top of a surfboard", "A surfer rides a big wave."],
        ["two dogs do not like the toy of the cat", "Dogs don't like the cat's toy."],
    ]
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    gts = {i: [coco_tokenize(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [coco_tokenize(h)] for i, h in enumerate(hyps)}
    assert bleu(hyps, refs) == pytest.approx(100 * Bleu(4).compute_score(gts, res, verbose=0)[0][3])
    assert cider(hyps, refs) == pytest.approx(Cider().compute_score(gts, res)[0])
    # case and punctuation are not content: a caption equal to a reference up to them scores 100
    same = ["A Man riding a wave, on top of a surfboard!"]
    assert bleu(same, [["a man riding a wave on top of a surfboard."]]) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="at least one reference"):
        bleu(["x"], [[]])
