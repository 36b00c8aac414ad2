"""``nomad quickstart``: the offline core loop (logic in nomad.quickstart)."""

from __future__ import annotations

import importlib.util

import click

from nomad.cli.context import Ctx


@click.command("quickstart")
@click.option("--skip-plan", is_flag=True, help="Stop after the push is verified.")
@click.pass_context
def quickstart(click_ctx: click.Context, skip_plan: bool) -> None:
    """Stack up → build the example image → push → verify → plan, with no cloud account.

    The example bakes in three SMALL STAND-IN weight files (not real models).
    """
    from nomad import quickstart as qs
    from nomad.cli.main import cli
    from nomad.resources import catalog_dir

    ctx: Ctx = click_ctx.obj
    say = click.echo
    base = ["--data-dir", str(ctx.data_dir)]
    project = qs.example_project(ctx.data_dir)
    cfg = ["-c", str(project), *base]
    say("== 1/5 embedded stack (SeaweedFS S3 + registry on 127.0.0.1)")
    qs.invoke(cli, [*base, "dev", "up"])
    say("== 2/5 build the example image")
    qs.make_standins(project, say)
    qs.invoke(cli, [*cfg, "build"])
    say("== 3/5 push (unchanged blobs move 0 bytes)")
    qs.invoke(cli, [*cfg, "push"])
    say("== 4/5 verify")
    result = qs.verify_push(ctx.data_dir, say)
    if not skip_plan:
        say(
            "== 5/5 launch plan (SkyPilot optimizer, pinned catalog snapshot; prices are a fixture)"
        )
        if importlib.util.find_spec("sky") is None:
            say("SkyPilot is not installed: pip install 'nomad-comfy[sky]' to see the plan")
        else:
            plan = [*cfg, "plan", "--backend", "skypilot", "--catalog", str(catalog_dir())]
            qs.invoke(cli, [*plan, "--bench", "@reference"])
            say(
                "($/image from the published RTX 4090/5090 reference timings; run `nomad bench` for your own)"
            )
    stop = f"nomad --data-dir {ctx.data_dir} dev down" if ctx.data_dir_opt else "nomad dev down"
    say(
        f"\nimage: {result['ref']}\n"
        "  stand-in weights on a loopback registry: a demo, not something a cloud GPU can pull.\n"
        f"the embedded stack is still running; stop it with: {stop}\n"
        "next: `nomad init` in your project folder (see docs/going-real.md)"
    )
