"""Command of the download stage (workflow/rules/download.smk): `moesd download` resolves every
hf: spec to a commit (checked against the experiment's lock file), prints the bytes to fetch,
fetches them into the Hugging Face cache and writes the manifest later rules load by
(moesd.download)."""

from __future__ import annotations

from pathlib import Path


def cmd_download(args) -> int:
    from moesd.download import download

    resolved = download(args.specs, args.manifest, args.lock, update_lock=args.update_lock)
    print(f"download: {len(resolved)} model(s) in the cache -> {args.manifest}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("download", help="resolve hf: specs to commits and fetch them into the Hugging Face cache")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="hf:ORG/NAME@REVISION")
    p.add_argument("--manifest", type=Path, required=True, help="manifest to write (spec, commit, files, bytes)")
    p.add_argument("--lock", type=Path, help="lock file of resolved commits: read, checked, extended")
    p.add_argument("--update-lock", action="store_true", help="accept a moved branch and record its new commit")
    p.set_defaults(func=cmd_download)
