"""An offline demo workspace: synthetic shape scenes with exact ground truth.

Why synthetic scenes: with no network and no model weights, the studio still needs images
whose content is known *exactly*, so caption accuracy (objects, counts, colours, positions,
text) can be scored against the truth. Each scene's ground truth is stored in
``Image.meta``; web-style alt-text is added with its failure style recorded in provenance
(partial, junk, wrong or faithful), a few approved human captions show the target style,
and an annotation set feeds the Annotate tab.

:func:`create_demo` is idempotent: a second run adds nothing (images are keyed by
``original_key``), never changes an existing user's password, and reports the same login.
"""

from __future__ import annotations

import io
import math
import os
import random
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont
from sqlalchemy import func
from sqlmodel import Session, select

from backend.captions import add_caption, review_caption, revise_human_caption
from backend.datasets import get_or_create_dataset
from backend.db import read_session, write_session
from backend.images import add_image, decode_image
from backend.models import AnnotationSet, Caption, CaptionKind, CaptionStatus, Image, Role, User
from backend.users import add_user, get_user, verify_login
from backend.workspace import Workspace

DEMO_DATASET = "demo-shapes"
DEMO_ADMIN = "admin"
DEMO_ANNOTATOR = "demo-annotator"
DEMO_SET = "demo-caption-set"
DEMO_SET_SIZE = 24
PASSWORD_ENV = "RECAP_STUDIO_DEMO_PASSWORD"
CREDENTIALS_FILE = "demo_credentials.txt"
STUDIO_URL = "http://127.0.0.1:7860"

N_SCENES = 60
SIZE = 256
SEED = 20231004
N_EXAMPLES = 6  # approved human captions

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (245, 210, 40),
    "green": (40, 160, 70),
    "blue": (40, 90, 220),
    "purple": (140, 60, 190),
    "pink": (240, 120, 180),
    "brown": (130, 80, 40),
    "black": (20, 20, 20),
    "white": (250, 250, 250),
    "gray": (128, 128, 128),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "light gray": (215, 215, 215),
    "beige": (240, 228, 200),
    "light blue": (200, 225, 245),
    "pale green": (210, 240, 210),
    "dark gray": (60, 60, 60),
}
# object colours that would not stand out on a background
_LOW_CONTRAST = {
    "white": {"white", "yellow"},
    "light gray": {"white", "gray"},
    "beige": {"white", "yellow"},
    "light blue": {"white"},
    "pale green": {"white"},
    "dark gray": {"black", "gray", "brown"},
}
SHAPES = ("circle", "square", "triangle", "star", "diamond")
SIZES = {"small": 40, "medium": 70, "large": 110}  # bounding-box side in pixels
WORDS = ("SALE", "OPEN", "HELLO", "STOP", "42", "NEW")
_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
_STYLE_WEIGHTS = (("partial", 45), ("junk", 20), ("wrong", 20), ("faithful", 15))


# ---------------------------------------------------------------------------- scenes


def region_of(x: float, y: float, size: int = SIZE) -> str:
    """Coarse 3x3 region name: "top left", "top", …, "center", …, "bottom right"."""
    col = ("left", "", "right")[min(2, int(3 * x / size))]
    row = ("top", "", "bottom")[min(2, int(3 * y / size))]
    return " ".join(p for p in (row, col) if p) or "center"


def region_phrase(region: str) -> str:
    if region == "center":
        return "in the center"
    if region in ("left", "right"):
        return f"on the {region}"
    return f"at the {region}"


_TEXT_ANCHORS = {
    "top": (128, 26),
    "bottom": (128, 230),
    "left": (48, 128),
    "right": (208, 128),
    "center": (128, 128),
}
_FONT_SIZE = 28


def _font(size: int = _FONT_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: small bitmap font
        return ImageFont.load_default()


def _object_box(obj: dict[str, Any]) -> tuple[float, float, float, float]:
    h = SIZES[obj["size"]] / 2
    return (obj["x"] - h, obj["y"] - h, obj["x"] + h, obj["y"] + h)


def _text_box(word: str, region: str) -> tuple[float, float, float, float]:
    x, y = _TEXT_ANCHORS[region]
    # generous: 0.75 em per character, one em high, plus a margin
    half_w, half_h = 0.4 * _FONT_SIZE * len(word) + 4, 0.5 * _FONT_SIZE + 4
    return (x - half_w, y - half_h, x + half_w, y + half_h)


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def make_scene(rng: random.Random) -> dict[str, Any]:
    """A random scene description (the ground truth); :func:`render_scene` draws it."""
    background = rng.choice(list(BACKGROUNDS))
    palette = [c for c in COLORS if c not in _LOW_CONTRAST[background]]
    n_objects = rng.choices((1, 2, 3, 4), weights=(25, 30, 25, 20))[0]
    objects: list[dict[str, Any]] = []
    placed: list[tuple[float, float, float]] = []
    for _ in range(n_objects):
        size = rng.choice(list(SIZES))
        for _attempt in range(300):
            half = SIZES[size] / 2
            x = rng.uniform(half + 6, SIZE - half - 6)
            y = rng.uniform(half + 6, SIZE - half - 6)
            if all(math.hypot(x - px, y - py) > half + pr + 8 for px, py, pr in placed):
                break
            if _attempt % 50 == 49 and size != "small":  # crowded: try a smaller object
                size = "medium" if size == "large" else "small"
        else:
            continue  # no room left; the scene simply has fewer objects
        placed.append((x, y, half))
        objects.append(
            {
                "shape": rng.choice(SHAPES),
                "color": rng.choice(palette),
                "size": size,
                "x": int(round(x)),
                "y": int(round(y)),
                "region": region_of(x, y),
            }
        )
    scene: dict[str, Any] = {"background": background, "objects": objects, "text": None}
    if rng.random() < 0.2:  # some scenes carry a word, so captions must quote text
        word = rng.choice(WORDS)
        free = [
            r
            for r in _TEXT_ANCHORS
            if not any(_overlaps(_text_box(word, r), _object_box(o)) for o in objects)
        ]
        if free:
            ink = "white" if background == "dark gray" else "black"
            scene["text"] = {"content": word, "color": ink, "region": rng.choice(free)}
    return scene


def _shape_points(shape: str, cx: float, cy: float, side: float) -> list[tuple[float, float]]:
    h = side / 2
    if shape == "triangle":
        return [(cx, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "diamond":
        return [(cx, cy - h), (cx + h * 0.75, cy), (cx, cy + h), (cx - h * 0.75, cy)]
    if shape == "star":
        pts = []
        for i in range(10):
            r = h if i % 2 == 0 else h * 0.45
            a = -math.pi / 2 + i * math.pi / 5
            pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
        return pts
    raise ValueError(shape)


def render_scene(scene: dict[str, Any]) -> bytes:
    """PNG bytes of a scene (deterministic for a given scene)."""
    img = PILImage.new("RGB", (SIZE, SIZE), BACKGROUNDS[scene["background"]])
    draw = ImageDraw.Draw(img)
    for obj in scene["objects"]:
        side = SIZES[obj["size"]]
        cx, cy, h = obj["x"], obj["y"], side / 2
        fill = COLORS[obj["color"]]
        if obj["shape"] == "circle":
            draw.ellipse((cx - h, cy - h, cx + h, cy + h), fill=fill)
        elif obj["shape"] == "square":
            draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=fill)
        else:
            draw.polygon(_shape_points(obj["shape"], cx, cy, side), fill=fill)
    text = scene.get("text")
    if text:
        x, y = _TEXT_ANCHORS[text["region"]]
        draw.text((x, y), text["content"], fill=COLORS[text["color"]], font=_font(), anchor="mm")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


# ---------------------------------------------------------------------------- captions


def _plural(shape: str) -> str:
    return shape + "es" if shape.endswith("s") else shape + "s"


def _count_phrase(n: int, words: str, shape: str) -> str:
    return (
        _article(f"{words} {shape}") if n == 1 else f"{_NUMBER_WORDS.get(n, str(n))} {words} {_plural(shape)}"
    )


def _article(words: str) -> str:
    return ("an " if words[:1] in "aeiou" else "a ") + words


def _name(obj: dict[str, Any], with_size: bool = True) -> str:
    parts = [obj["size"]] if with_size else []
    return " ".join([*parts, obj["color"], obj["shape"]])


def _main_object(scene: dict[str, Any]) -> dict[str, Any]:
    rank = {"large": 0, "medium": 1, "small": 2}
    return min(scene["objects"], key=lambda o: rank[o["size"]])


def _groups(scene: dict[str, Any]) -> list[tuple[int, str, str, str]]:
    """(count, size, colour, shape) of identical-looking objects, in first-seen order."""
    counts: dict[tuple[str, str, str], int] = {}
    for o in scene["objects"]:
        key = (o["size"], o["color"], o["shape"])
        counts[key] = counts.get(key, 0) + 1
    return [(n, *key) for key, n in counts.items()]


def _group_phrase(n: int, size: str, color: str, shape: str) -> str:
    if n == 1:
        return _article(f"{size} {color} {shape}")
    return f"{_NUMBER_WORDS.get(n, str(n))} {size} {color} {_plural(shape)}"


def human_short_caption(scene: dict[str, Any]) -> str:
    """An accurate short caption (main subject, one sentence) from the ground truth."""
    objs = scene["objects"]
    bg = scene["background"]
    text = scene.get("text")
    suffix = ""
    if text:
        suffix = f' with the {"number" if text["content"].isdigit() else "word"} "{text["content"]}"'
    groups = _groups(scene)
    if len(groups) == 1:
        subject = _group_phrase(*groups[0])
    else:
        main = _main_object(scene)
        others = len(objs) - 1
        subject = (
            f"{_article(_name(main))} and {_NUMBER_WORDS[others]} other shape{'s' if others > 1 else ''}"
        )
    return f"{subject[0].upper()}{subject[1:]} on {_article(bg)} background{suffix}."


def human_long_caption(scene: dict[str, Any]) -> str:
    """An accurate long caption: every object, count, colour, size, position, relation, text."""
    objs = scene["objects"]
    n = len(objs)
    shape_word = "geometric shape" if n == 1 else "geometric shapes"
    count_word = "a single" if n == 1 else _NUMBER_WORDS[n]
    sentences = [
        f"A flat digital illustration of {count_word} {shape_word} on a plain {scene['background']} background."
    ]
    for o in objs:
        where = region_phrase(o["region"])
        sentences.append(f"{where[0].upper()}{where[1:]} there is {_article(_name(o))}.")
    by_x = sorted(objs, key=lambda o: o["x"])
    for a, b in zip(by_x, by_x[1:], strict=False):
        dx, dy = b["x"] - a["x"], b["y"] - a["y"]
        name_a, name_b = _name(a, False), _name(b, False)
        rel = "to the left of" if abs(dx) >= abs(dy) else "above" if dy > 0 else "below"
        if name_a == name_b:
            sentences.append(f"One {name_a} is {rel} another {name_b}.")
        else:
            sentences.append(f"The {name_a} is {rel} the {name_b}.")
    text = scene.get("text")
    if text:
        content = text["content"]
        what = "number" if content.isdigit() else "word"
        letters = "" if content.isdigit() else " capital letters"
        sentences.append(
            f'The {what} "{content}" is written in {text["color"]}{letters} {region_phrase(text["region"])}.'
        )
    else:
        sentences.append("There is no text.")
    return " ".join(sentences)


_JUNK_TEMPLATES = (
    "IMG_{n4}.JPG",
    "DSC_{n4}.jpg",
    "https://cdn.example.com/assets/{n5}.png",
    "Stock photo - buy now, free shipping",
    "untitled",
    "image.png",
    "Click here to download the full-size wallpaper",
    "© 2021 All rights reserved",
    "{hex}",
    "Image may contain: shape",
)


def alttext_for(scene: dict[str, Any], style: str, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """Web-style alt-text of the given failure style, and extra provenance about it."""
    objs = scene["objects"]
    extra: dict[str, Any] = {}
    if style == "junk":
        template = rng.choice(_JUNK_TEMPLATES)
        text = template.format(n4=rng.randint(1000, 9999), n5=rng.randint(10000, 99999), hex=secrets_hex(rng))
        return text, extra
    obj = rng.choice(objs)
    if style == "partial":
        options = [
            f"{obj['color']} {obj['shape']}",
            f"A {obj['shape']}",
            f"{obj['color'].capitalize()} {obj['shape']} clipart",
            f"Abstract {obj['shape']} design",
        ]
        return rng.choice(options), extra
    if style == "wrong":
        same = sum(1 for o in objs if o["shape"] == obj["shape"] and o["color"] == obj["color"])
        if rng.random() < 0.5:
            taken = {o["color"] for o in objs if o["shape"] == obj["shape"]}
            wrong_color = rng.choice([c for c in COLORS if c not in taken])
            extra["demo_error"] = "color"
            return _count_phrase(same, wrong_color, obj["shape"]).capitalize(), extra
        extra["demo_error"] = "count"
        wrong_n = same + rng.choice((1, 2))
        return _count_phrase(wrong_n, obj["color"], obj["shape"]).capitalize(), extra
    # faithful: every object named, short and plain
    parts = [_group_phrase(*g) for g in _groups(scene)]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{listed[0].upper()}{listed[1:]} on {_article(scene['background'])} background", extra


def secrets_hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(48):012x}"


# ---------------------------------------------------------------------------- users


def _read_credentials(path: Path) -> dict[str, str]:
    creds: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#") and "\t" in line:
                name, password = line.split("\t", 1)
                creds[name.strip()] = password.strip()
    return creds


def _write_credentials(path: Path, creds: dict[str, str], admin_from_env: bool) -> None:
    lines = [
        "# RECAP Studio demo logins, written by `recap-studio demo`. Keep this file private.",
        "# user<TAB>password",
    ]
    if admin_from_env:
        lines.append(f"# {DEMO_ADMIN}: password taken from ${PASSWORD_ENV} (not stored here)")
    lines += [f"{name}\t{password}" for name, password in creds.items()]
    data = "\n".join(lines) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") == data:
        os.chmod(path, 0o600)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


@dataclass
class DemoInfo:
    dataset: str
    images: int
    admin: str
    admin_password: str | None  # None: "admin" existed before with a password unknown here (left unchanged)
    annotator: str
    credentials_file: Path
    created: bool  # did this run add anything?
    admin_password_note: str = ""
    annotation_set: str | None = None

    def describe(self) -> str:
        lines = [
            f"Demo dataset '{self.dataset}': {self.images} images"
            + (" (created)." if self.created else " (already present; nothing added)."),
            f"Start the studio with: recap-studio --home {self.credentials_file.parent} serve",
            f"then open {STUDIO_URL} and log in:",
            f"  user:      {self.admin}",
        ]
        if self.admin_password is not None:
            lines.append(f"  password:  {self.admin_password}   ({self.admin_password_note})")
        else:
            lines.append(f"  password:  {self.admin_password_note or 'existing password unchanged'}")
        lines.append(f"Annotator '{self.annotator}': password in {self.credentials_file}")
        if self.annotation_set:
            lines.append(f"Annotation set '{self.annotation_set}' is ready in the Annotate tab.")
        return "\n".join(lines)


def _ensure_users(ws: Workspace) -> tuple[str | None, str, bool]:
    """Create the demo users; returns (admin password or None when unknown, note, created)."""
    cred_path = ws.home / CREDENTIALS_FILE
    creds = _read_credentials(cred_path)
    env_password = os.environ.get(PASSWORD_ENV) or None
    created = False

    admin_password: str | None
    if get_user(ws, DEMO_ADMIN) is None:
        if env_password:
            admin_password, note = env_password, f"from ${PASSWORD_ENV}"
            creds.pop(DEMO_ADMIN, None)
        else:
            admin_password = creds.get(DEMO_ADMIN) or secrets.token_urlsafe(12)
            creds[DEMO_ADMIN] = admin_password
            note = f"saved in {cred_path}"
        add_user(ws, DEMO_ADMIN, Role.admin.value, admin_password)
        created = True
    elif env_password and verify_login(ws, DEMO_ADMIN, env_password):
        admin_password, note = env_password, f"from ${PASSWORD_ENV}; existing password unchanged"
    elif creds.get(DEMO_ADMIN) and verify_login(ws, DEMO_ADMIN, creds[DEMO_ADMIN]):
        admin_password, note = creds[DEMO_ADMIN], f"saved in {cred_path}; existing password unchanged"
    else:
        admin_password, note = None, "existing password unchanged"
        if env_password:
            note += f" (${PASSWORD_ENV} was not applied)"
    if DEMO_ADMIN in creds and creds[DEMO_ADMIN] != admin_password:
        del creds[DEMO_ADMIN]  # a stale line would only mislead

    if get_user(ws, DEMO_ANNOTATOR) is None:
        password = creds.get(DEMO_ANNOTATOR) or secrets.token_urlsafe(12)
        creds[DEMO_ANNOTATOR] = password
        add_user(ws, DEMO_ANNOTATOR, Role.annotator.value, password)
        created = True
    _write_credentials(cred_path, creds, admin_from_env=bool(env_password) and DEMO_ADMIN not in creds)
    return admin_password, note, created


# ---------------------------------------------------------------------------- demo


def demo_scenes(n: int = N_SCENES, seed: int = SEED) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [make_scene(rng) for _ in range(n)]


def _example_indices(scenes: list[dict[str, Any]]) -> list[int]:
    """Scenes for the approved human examples: one with text, one single-object, one busy, then spread."""
    chosen: list[int] = []
    for pred in (
        lambda s: s["text"] is not None,
        lambda s: len(s["objects"]) == 1,
        lambda s: len(s["objects"]) == 4,
    ):
        i = next((i for i, s in enumerate(scenes) if pred(s) and i not in chosen), None)
        if i is not None:
            chosen.append(i)
    for i in range(0, len(scenes), 10):
        if len(chosen) >= N_EXAMPLES:
            break
        if i not in chosen:
            chosen.append(i)
    return sorted(chosen[:N_EXAMPLES])


def _add_examples(
    s: Session, images: list[Image], scenes: list[dict[str, Any]], annotator: User, admin: User
) -> bool:
    created = False
    for i in _example_indices(scenes):
        image = images[i]
        for kind, text in (
            (CaptionKind.human_short.value, human_short_caption(scenes[i])),
            (CaptionKind.human_long.value, human_long_caption(scenes[i])),
        ):
            exists = s.exec(
                select(Caption.id).where(
                    Caption.image_id == image.id, Caption.kind == kind, Caption.annotator_id == annotator.id
                )
            ).first()
            if exists is not None:
                continue
            caption = revise_human_caption(
                s,
                image.id,
                kind,
                annotator.id,
                text,
                status=CaptionStatus.submitted.value,
                source="demo",
                provenance={"demo_template": "ground_truth"},
            )
            review_caption(s, caption.id, admin.id, approve=True)
            created = True
    return created


def _ensure_annotation_set(ws: Workspace, dataset: str, admin_id: int) -> bool:
    from backend.annotation import create_annotation_set

    with read_session(ws) as s:
        if s.exec(select(AnnotationSet.id).where(AnnotationSet.name == DEMO_SET)).first() is not None:
            return False
    create_annotation_set(ws, dataset=dataset, name=DEMO_SET, size=DEMO_SET_SIZE, seed=0, created_by=admin_id)
    return True


def create_demo(ws: Workspace) -> DemoInfo:
    """Create (or find) the offline demo: dataset, users, alt-text, human examples, annotation set."""
    admin_password, note, created = _ensure_users(ws)
    scenes = demo_scenes()
    style_rng = random.Random(SEED + 1)
    styles = [
        style_rng.choices([s for s, _ in _STYLE_WEIGHTS], weights=[w for _, w in _STYLE_WEIGHTS])[0]
        for _ in scenes
    ]
    with write_session(ws) as s:
        dataset = get_or_create_dataset(s, DEMO_DATASET)
        if not dataset.description:
            dataset.description = "Synthetic shape scenes with exact ground truth (offline demo)."
            s.add(dataset)
        existing = {
            img.original_key: img for img in s.exec(select(Image).where(Image.dataset_id == dataset.id))
        }
        images: list[Image] = []
        for i, scene in enumerate(scenes):
            key = f"demo/scene_{i:03d}.png"
            image = existing.get(key)
            if image is None:
                decoded = decode_image(render_scene(scene))
                image, new = add_image(s, ws, dataset.id, decoded, key, meta=scene)
                if new:
                    created = True
                    alt_rng = random.Random(SEED * 1000 + i)
                    text, extra = alttext_for(scene, styles[i], alt_rng)
                    add_caption(
                        s,
                        image.id,
                        CaptionKind.alttext.value,
                        text,
                        source="demo",
                        provenance={"demo_alttext_style": styles[i], **extra},
                    )
            images.append(image)
        admin = s.exec(select(User).where(User.name == DEMO_ADMIN)).one()
        annotator = s.exec(select(User).where(User.name == DEMO_ANNOTATOR)).one()
        created |= _add_examples(s, images, scenes, annotator, admin)
        n_images = s.exec(select(func.count()).select_from(Image).where(Image.dataset_id == dataset.id)).one()
        admin_id = admin.id
    created |= _ensure_annotation_set(ws, DEMO_DATASET, admin_id)
    return DemoInfo(
        dataset=DEMO_DATASET,
        images=n_images,
        admin=DEMO_ADMIN,
        admin_password=admin_password,
        annotator=DEMO_ANNOTATOR,
        credentials_file=ws.home / CREDENTIALS_FILE,
        created=created,
        admin_password_note=note,
        annotation_set=DEMO_SET,
    )
