"""Commands for the Arena: ``arena create|list|close|import-votes|export-votes|results``.

``arena create NAME --verdict ...`` makes a verdict campaign (one image and its prompt, faithful
or not; :mod:`backend.arena.verdicts`); ``results`` and ``export-votes`` answer for either kind.

Registered on the main app in :mod:`studio.cli`; like :mod:`studio.runs_cli` this module never
imports ``studio.cli`` and takes the workspace from the root ``--home`` through the click context.

Exit codes: 0 success, 2 bad usage or bad input (unknown campaign or dataset, malformed CSV rows,
a corrupt image) — with one ``error:`` line on stderr and nothing written.
``--json`` prints one JSON object as the last line of stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from backend.db import migrate
from backend.workspace import Workspace, open_workspace
from studio.console import fail, out

arena_app = typer.Typer(
    help="Blind evaluation campaigns: pairwise preferences, or absolute verdicts (--verdict).",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary as the last line of stdout.")]
DEFAULT_T2I_CRITERIA = "matches the prompt"
DEFAULT_CAPTION_CRITERIA = "describes the image better"


def _ws(ctx: typer.Context) -> Workspace:
    """The workspace named by the root command's ``--home`` (or the environment / default)."""
    ws = open_workspace(ctx.find_root().params.get("home"))
    migrate(ws)
    return ws


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


@arena_app.command("create")
def create_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Campaign name (unique).")],
    from_generated: Annotated[
        str | None, typer.Option("--from-generated", help="Dataset(s) of generated images, comma-separated.")
    ] = None,
    from_folders: Annotated[
        Path | None, typer.Option("--from-folders", help="Folder with one sub-folder of images per system.")
    ] = None,
    prompts: Annotated[
        Path | None,
        typer.Option(
            "--prompts", help="CSV for --from-folders: system,file,prompt[,category,seed,caption_condition]."
        ),
    ] = None,
    captions: Annotated[
        str | None, typer.Option("--captions", help="Dataset whose caption kinds compete (caption arena).")
    ] = None,
    kinds: Annotated[
        str | None, typer.Option("--kinds", help="Caption kinds for --captions, e.g. alttext,recap_long.")
    ] = None,
    criteria: Annotated[
        str | None,
        typer.Option(
            "--criteria",
            help=f"Comma-separated questions (default '{DEFAULT_T2I_CRITERIA}', "
            f"captions '{DEFAULT_CAPTION_CRITERIA}').",
        ),
    ] = None,
    target: Annotated[
        int, typer.Option("--target", help="Votes wanted per pair and criterion (--verdict: per image).")
    ] = 3,
    repeat_share: Annotated[
        float,
        typer.Option(
            "--repeat-share",
            help="Share of votes asked again with sides swapped (0-0.5; --verdict: asked again).",
        ),
    ] = 0.1,
    gold_share: Annotated[
        float, typer.Option("--gold-share", help="Share of votes on gold pairs with a known answer (0-0.5).")
    ] = 0.0,
    max_images: Annotated[int, typer.Option("--max-images", help="Images drawn for --captions.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Seed for drawing images and gold pairs.")] = 0,
    verdict: Annotated[
        bool,
        typer.Option(
            "--verdict",
            help="Absolute verdicts instead of pairs: each image alone with its prompt, faithful or not "
            "(keys Y/N), --target verdicts per image.",
        ),
    ] = False,
    question: Annotated[
        str | None, typer.Option("--question", help="--verdict: the question asked of every image.")
    ] = None,
    elements: Annotated[
        Path | None,
        typer.Option(
            "--elements",
            help="--verdict: JSON Lines of the prompts' required elements, offered as 'missing' ticks: "
            '{"prompt": ..., "elements": [...]} or a structured prompt (objects, relations; GenEval include).',
        ),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="--verdict: the system relative improvements are measured against."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a campaign from generated datasets, image folders + prompts CSV, or caption kinds."""
    from backend import arena

    sources = [
        o
        for o, v in (
            ("--from-generated", from_generated),
            ("--from-folders", from_folders),
            ("--captions", captions),
        )
        if v
    ]
    if len(sources) != 1:
        raise fail(
            "give exactly one source: --from-generated DATASET[,DATASET], --from-folders ROOT --prompts CSV, "
            f"or --captions DATASET --kinds K1,K2 (got {', '.join(sources) or 'none'})"
        )
    if from_folders is not None and prompts is None:
        raise fail("--from-folders needs --prompts CSV (columns system,file,prompt)")
    if prompts is not None and from_folders is None:
        raise fail("--prompts goes with --from-folders ROOT")
    if captions is not None and len(_split(kinds)) < 2:
        raise fail(
            "--captions needs --kinds with at least two caption kinds, e.g. --kinds alttext,recap_long"
        )
    if kinds is not None and captions is None:
        raise fail("--kinds goes with --captions DATASET")
    if verdict:
        _create_verdict(ctx, name, from_generated, from_folders, prompts, captions, criteria, gold_share,
                        question, elements, baseline, target, repeat_share, seed, as_json)  # fmt: skip
        return
    extra = [
        o for o, v in (("--question", question), ("--elements", elements), ("--baseline", baseline)) if v
    ]
    if extra:
        raise fail(f"{', '.join(extra)} go(es) with --verdict (absolute verdicts)")
    plan = dict(target_per_pair=target, repeat_share=repeat_share, gold_share=gold_share, seed=seed)
    ws = _ws(ctx)
    try:
        if from_generated:
            crit = _split(criteria or DEFAULT_T2I_CRITERIA)
            campaign = arena.create_campaign_from_generated(ws, name, _split(from_generated), crit, **plan)
        elif from_folders is not None:
            crit = _split(criteria or DEFAULT_T2I_CRITERIA)
            campaign = arena.create_campaign_from_folders(ws, name, from_folders, prompts, crit, **plan)  # type: ignore[arg-type]
        else:
            crit = _split(criteria or DEFAULT_CAPTION_CRITERIA)
            campaign = arena.create_caption_campaign(
                ws, name, captions or "", _split(kinds), criteria=crit, max_images=max_images, **plan
            )
    except arena.ArenaError as exc:
        raise fail(str(exc)) from None
    summary = next(s for s in arena.list_campaigns(ws) if s.id == campaign.id)
    if as_json:
        print(json.dumps(_summary_dict(summary), default=str))
        return
    out.print(
        f"Created {summary.kind} campaign '{summary.name}': {summary.systems} systems, {summary.pairs} pairs"
        f"{f' + {summary.gold_pairs} gold' if summary.gold_pairs else ''}, criteria: {', '.join(summary.criteria)}; "
        f"{summary.total} votes wanted ({summary.target_per_pair} per pair and criterion).",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _create_verdict(
    ctx: typer.Context,
    name: str,
    from_generated: str | None,
    from_folders: Path | None,
    prompts: Path | None,
    captions: str | None,
    criteria: str | None,
    gold_share: float,
    question: str | None,
    elements: Path | None,
    baseline: str | None,
    target: int,
    repeat_share: float,
    seed: int,
    as_json: bool,
) -> None:
    """``arena create NAME --verdict``: a verdict campaign over generated images or folders."""
    from backend import arena

    if captions is not None:
        raise fail("--verdict judges images against their prompts: use --from-generated or --from-folders")
    if criteria is not None:
        raise fail("a verdict campaign asks one question: give it with --question, not --criteria")
    if gold_share:
        raise fail("--gold-share is for pairwise campaigns; verdict campaigns have no gold pairs")
    ws = _ws(ctx)
    try:
        campaign = arena.create_verdict_campaign(
            ws,
            name,
            datasets=_split(from_generated) if from_generated else None,
            root=from_folders,
            prompts_csv=prompts,
            question=question or arena.DEFAULT_QUESTION,
            elements_file=elements,
            target_per_item=target,
            repeat_share=repeat_share,
            baseline=baseline,
            seed=seed,
        )
    except arena.ArenaError as exc:
        raise fail(str(exc)) from None
    summary = next(s for s in arena.list_campaigns(ws) if s.id == campaign.id)
    ticks = (campaign.meta or {}).get("elements") or {}
    if as_json:
        data = {**_summary_dict(summary), "images": summary.pairs, "baseline": baseline, "elements": ticks}
        print(json.dumps(data, default=str))
        return
    out.print(
        f"Created verdict campaign '{summary.name}': {summary.systems} systems, {summary.pairs} images, "
        f"question: {summary.criteria[0]}; {summary.total} verdicts wanted ({summary.target_per_pair} per image); "
        f"missing-element ticks for {ticks.get('prompts_with_elements', 0)} of {ticks.get('prompts', 0)} prompts"
        f"{f'; baseline {baseline}' if baseline else ''}.",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _summary_dict(s: Any) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in s.__dict__.items()}


@arena_app.command("list")
def list_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Campaigns with their progress."""
    from backend import arena

    rows = arena.list_campaigns(_ws(ctx))
    if as_json:
        print(json.dumps([_summary_dict(s) for s in rows], default=str))
        return
    table = Table("campaign", "kind", "status", "systems", "pairs", "votes", "annotators", "progress")
    for s in rows:
        table.add_row(
            s.name, s.kind, s.status, str(s.systems), str(s.pairs), str(s.judgments), str(s.annotators),
            f"{s.done}/{s.total}",
        )  # fmt: skip
    out.print(table)


@arena_app.command("close")
def close_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    reopen: Annotated[
        bool, typer.Option("--reopen", help="Refused for a closed campaign: closing unblinded it.")
    ] = False,
) -> None:
    """Close a campaign for good: no more pairs and no more votes (closing unblinds it)."""
    from backend import arena

    try:
        campaign = arena.close_campaign(_ws(ctx), name, reopen=reopen)
    except arena.ArenaError as exc:
        raise fail(str(exc)) from None
    out.print(f"Campaign '{campaign.name}' is {campaign.status}.", markup=False)


@arena_app.command("import-votes")
def import_votes_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Campaign (created when new).")],
    file: Annotated[
        Path, typer.Argument(help="CSV with columns prompt,left,right,winner,annotator,criterion.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Import judgments; any malformed row refuses the whole file (with line numbers)."""
    from backend import arena

    try:
        report = arena.import_votes_csv(_ws(ctx), name, file)
    except arena.ArenaError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps(report.as_dict()))
        return
    out.print(
        f"Imported {report.votes} votes into {'new ' if report.created_campaign else ''}campaign "
        f"'{report.campaign}' ({len(report.systems_created)} new systems, "
        f"{len(report.annotators_created)} new annotators, {report.pairs_created} new pairs).",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@arena_app.command("export-votes")
def export_votes_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    file: Annotated[Path, typer.Argument(help="CSV file to write.")],
    as_json: JsonOpt = False,
) -> None:
    """Write every judgment (the import columns plus timing, flags and source) to a CSV."""
    from backend import arena

    try:
        n = arena.export_votes_csv(_ws(ctx), name, file)
    except arena.ArenaError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot write {file}: {exc.strerror or exc}", 1) from None
    if as_json:
        print(json.dumps({"campaign": name, "votes": n, "path": str(file)}))
        return
    out.print(f"Exported {n} votes of '{name}' to {file}", markup=False, highlight=False)


@arena_app.command("results")
def results_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    criterion: Annotated[
        str | None,
        typer.Option("--criterion", help="Ratings of this criterion (default: the campaign's first, its primary)."),
    ] = None,
    all_criteria: Annotated[
        bool,
        typer.Option("--all-criteria", help="Pool every criterion into one rating (one vote per judgment)."),
    ] = False,
    bootstrap: Annotated[
        int | None,
        typer.Option(
            "--bootstrap",
            min=1,
            help="Bootstrap rounds for intervals (resampling prompts); default 100, verdict campaigns 1000.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Also write the rating table to this CSV.")
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            help="Verdict campaigns: relative improvements against this system (default: the campaign's).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Bradley–Terry ratings with 95 % intervals (bootstrap over prompts), win counts, left bias and
    agreement, for the campaign's primary (first) criterion unless told otherwise. For a verdict
    campaign: success rates with 95 % intervals, the relative improvement against a baseline,
    agreement and missing-element counts."""
    from backend import arena

    ws = _ws(ctx)
    if criterion is not None and all_criteria:
        raise fail("give --criterion or --all-criteria, not both")
    try:
        kind = arena.get_campaign(ws, name).kind
    except arena.ArenaError as exc:
        raise fail(str(exc)) from None
    if kind == "verdict":
        if criterion is not None or all_criteria:
            raise fail("a verdict campaign asks one question: --criterion and --all-criteria do not apply")
        _verdict_results(ws, name, baseline, bootstrap or 1000, seed, csv_path, as_json)
        return
    if baseline is not None:
        raise fail("--baseline is for verdict campaigns (pairwise ratings have no baseline)")
    bootstrap = bootstrap or 100
    options = {"criterion": criterion, "pool_criteria": all_criteria, "bootstrap_rounds": bootstrap, "seed": seed}
    try:
        if csv_path is not None:
            results = arena.export_results_csv(ws, name, csv_path, **options)
        else:
            results = arena.campaign_results(ws, name, **options)
    except arena.ArenaError as exc:
        raise fail(str(exc)) from None
    data = results.to_json()
    if as_json:
        print(json.dumps(data, default=str))
        return
    if data["pooled"]:
        which = "all criteria pooled" if len(data["criteria"]) > 1 else str(data["criterion"] or "all votes")
    else:
        primary = " (primary)" if data["criterion"] == data["primary_criterion"] else ""
        which = f"criterion: {data['criterion']}{primary}"
    title = f"{data['campaign']}: {data['n_votes']} votes · {which}"
    table = Table(
        "rank",
        "system",
        "rating",
        "95% interval",
        "W",
        "L",
        "T",
        "caption condition",
        "captioner",
        title=title,
    )
    for row in data["ratings"]:
        meta = data["systems"][row["system"]]
        interval = f"{_fmt(row['lower'])} – {_fmt(row['upper'])}" if row["lower"] is not None else "—"
        table.add_row(
            _fmt(row["rank"]), row["system"], _fmt(row["rating"]), interval, str(row["wins"]),
            str(row["losses"]), str(row["ties"]), meta.get("caption_condition") or "—", meta.get("captioner") or "—",
        )  # fmt: skip
    out.print(table)
    units = data["intervals"]["resampled_units"]
    out.print(
        f"95% intervals: percentile bootstrap over {units} prompt(s) ({bootstrap} rounds); the votes on one "
        "prompt (annotators, criteria, seeds) are resampled together.",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    others = [c for c in data["criteria"] if c != data["criterion"]]
    if len(data["criteria"]) > 1:
        out.print(
            f"Other criteria: {', '.join(others)} (--criterion NAME); --all-criteria pools them"
            if not data["pooled"]
            else "Each criterion alone: --criterion NAME",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    bias = data["left_bias"]
    if bias and bias["share"] is not None:
        out.print(
            f"Left side won {bias['share']:.0%} of {bias['decisive']} decisive votes "
            f"(95% {bias['lower']:.0%}–{bias['upper']:.0%}, p={bias['p_value']:.3g}).",
            markup=False,
            highlight=False,
        )
    agreement = data["agreement"]
    if agreement:
        out.print(
            f"Agreement: Fleiss κ {_fmt(agreement['fleiss'].get('kappa'), 2)}, "
            f"Krippendorff α {_fmt(agreement['alpha'].get('alpha'), 2)}.",
            markup=False,
            highlight=False,
        )
    for warning in data["warnings"]:
        out.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)


def _verdict_results(
    ws: Workspace,
    name: str,
    baseline: str | None,
    rounds: int,
    seed: int,
    csv_path: Path | None,
    as_json: bool,
) -> None:
    """``arena results`` for a verdict campaign: success rates, relative improvement, agreement, missing elements."""
    from backend import arena
    from backend.arena.verdict_stats import export_verdict_results_csv, percent

    options = {"baseline": baseline, "bootstrap_rounds": rounds, "seed": seed}
    try:
        if csv_path is not None:
            results = export_verdict_results_csv(ws, name, csv_path, **options)
        else:
            results = arena.verdict_results(ws, name, **options)
    except arena.ArenaError as exc:
        raise fail(str(exc)) from None
    data = results.to_json()
    if as_json:
        print(json.dumps(data, default=str))
        return
    base = data["baseline"]
    table = Table(
        "system", "success", "95% interval", "yes / verdicts", "images",
        f"vs {base}" if base else "relative", "caption condition",
        title=f"{data['campaign']}: {data['n_votes']} verdicts · {data['question']}",
    )  # fmt: skip
    for row in data["rates"]:
        system = data["systems"][row["system"]]
        rel = system["relative_improvement"]
        rel_text = (
            f"{_signed(rel['relative'])} [{_signed(rel['lower'])}, {_signed(rel['upper'])}]"
            if rel
            else ("baseline" if row["system"] == base else "—")
        )
        table.add_row(
            row["system"], percent(row["rate"]), f"{percent(row['lower'])} – {percent(row['upper'])}",
            f"{row['yes']} / {row['votes']}", str(row["items"]), rel_text, system.get("caption_condition") or "—",
        )  # fmt: skip
    out.print(table)
    units = data["intervals"]["resampled_units"]
    out.print(
        f"Success = share of annotators answering yes per image, averaged over a system's images. 95% "
        f"intervals: percentile bootstrap over {units} prompt(s) ({rounds} rounds); every image of a drawn "
        "prompt comes along. Relative improvement = (rate - baseline) / baseline, from the same rounds.",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    agreement = data["agreement"]
    if agreement:
        out.print(
            f"Agreement: {percent(agreement['raw'])} of annotator pairs agree; Fleiss κ "
            f"{_fmt(agreement['fleiss'].get('kappa'), 2)}, Krippendorff α {_fmt(agreement['alpha'].get('alpha'), 2)}.",
            markup=False,
            highlight=False,
        )
    missing = data["missing_elements"][:10]
    if missing:
        out.print("Most often missing:", markup=False, highlight=False)
        for m in missing:
            out.print(
                f"  {m['element']} ({m['system']}): {m['missing']} of {m['judged']}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
    for warning in data["warnings"]:
        out.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)


def _signed(value: Any) -> str:
    """A relative change as "+64.3%" (— when undefined)."""
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    return f"{100 * value:+.1f}%"
