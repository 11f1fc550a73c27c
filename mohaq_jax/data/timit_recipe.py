"""The standard TIMIT recipe: which speakers train, tune and score the model.

The recipe MOHAQ (Rezk et al., 2022, Sec. 5) inherits from PyTorch-Kaldi / Kaldi's
``egs/timit/s5``: the 462 speakers of TRAIN train the model, the 50-speaker
development set tunes it and the 24-speaker core test set (Halberstadt, 1998) scores
it. :func:`assign_splits` applies it to the speakers a copy holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mohaq_jax.data.timit_files import TimitError
from mohaq_jax.data.timit_layout import Unlabelled, Utterance, describe_unlabelled

#: The 24 speakers of the core test set (two male, one female per dialect region).
CORE_TEST_SPEAKERS: tuple[str, ...] = (
    "mdab0",
    "mwbt0",
    "felc0",  # DR1
    "mtas1",
    "mwew0",
    "fpas0",  # DR2
    "mjmp0",
    "mlnt0",
    "fpkt0",  # DR3
    "mlll0",
    "mtls0",
    "fjlm0",  # DR4
    "mbpm0",
    "mklt0",
    "fnlp0",  # DR5
    "mcmj0",
    "mjdh0",
    "fmgd0",  # DR6
    "mgrt0",
    "mnjm0",
    "fdhc0",  # DR7
    "mjln0",
    "mpam0",
    "fmld0",  # DR8
)

#: The 50 development speakers, Kaldi egs/timit/s5/conf/dev_spk.list (same order).
DEV_SPEAKERS: tuple[str, ...] = (
    "faks0",
    "fdac1",
    "fjem0",
    "mgwt0",
    "mjar0",
    "mmdb1",
    "mmdm2",
    "mpdf0",
    "fcmh0",
    "fkms0",
    "mbdg0",
    "mbwm0",
    "mcsh0",
    "fadg0",
    "fdms0",
    "fedw0",
    "mgjf0",
    "mglb0",
    "mrtk0",
    "mtaa0",
    "mtdt0",
    "mthc0",
    "mwjg0",
    "fnmr0",
    "frew0",
    "fsem0",
    "mbns0",
    "mmjr0",
    "mdls0",
    "mdlf0",
    "mdvc0",
    "mers0",
    "fmah0",
    "fdrw0",
    "mrcs0",
    "mrjm4",
    "fcal1",
    "mmwh0",
    "fjsj0",
    "majc0",
    "mjsw0",
    "mreb0",
    "fgjd0",
    "fjmg0",
    "mroa0",
    "mteb0",
    "mjfc0",
    "mrjr0",
    "fmml0",
    "mrws1",
)

#: Speakers in a complete LDC copy: TRAIN and TEST directories.
N_TRAIN_SPEAKERS = 462
N_TEST_DIR_SPEAKERS = 168


def speaker_summary(speakers, limit: int = 5) -> str:
    """Speaker ids, a long list cut to ``limit`` names and its count: one short line."""
    speakers = list(speakers)
    if len(speakers) <= limit:
        return " ".join(speakers) or "-"
    return f"{' '.join(speakers[:limit])} ... ({len(speakers)} in all)"


def assign_splits(
    layout: str,
    utterances: list[Utterance],
    allow_partial: bool = False,
    unlabelled: Sequence[Unlabelled] = (),
    allow_missing_labels: bool = False,
) -> dict[str, list[str]]:
    """Chooses the speakers of train/dev/test.

    A complete LDC copy gets the standard recipe (462 / 50 / 24 speakers) and
    any mismatch with the lists is an error. With ``allow_partial`` an
    incomplete copy (or the NLTK sample) is split by speaker from what exists:
    listed dev/core speakers go to dev/test, the TEST-directory speakers on
    neither list are left out (as in the recipe), the rest train; an empty dev
    or test set is filled with evenly spaced training speakers.

    Recordings without a .PHN (``unlabelled``) count towards a complete copy but
    are never used: on a complete copy they are an error unless
    ``allow_missing_labels``; a speaker whose .PHN files are all lost is named as
    such, not as missing.

    Returns:
      dict split name -> sorted speaker ids.

    Raises:
      TimitError: naming missing or misplaced speakers.
    """
    where: dict[str, set[str]] = {}
    for utt in [*utterances, *unlabelled]:
        where.setdefault(utt.speaker, set()).add(utt.directory)
    present = {utt.speaker for utt in utterances}
    lost = sorted(set(where) - present)  # every .PHN of these speakers is missing
    train_dir = {s for s, d in where.items() if "train" in d}
    test_dir = {s for s, d in where.items() if "test" in d}
    listed = set(DEV_SPEAKERS) | set(CORE_TEST_SPEAKERS)
    if layout == "ldc":
        misplaced = sorted(listed & train_dir)
        if misplaced:
            raise TimitError(
                "speakers of the dev/core-test lists found under TRAIN: "
                + speaker_summary(misplaced)
            )
    missing_dev = [s for s in DEV_SPEAKERS if s not in where]
    missing_core = [s for s in CORE_TEST_SPEAKERS if s not in where]
    full = (
        layout == "ldc"
        and len(train_dir) == N_TRAIN_SPEAKERS
        and len(test_dir) == N_TEST_DIR_SPEAKERS
    )
    without_labels = (
        "; " + describe_unlabelled(list(unlabelled), lost) if unlabelled else ""
    )
    if full and unlabelled and not allow_missing_labels:
        raise TimitError(
            f"TIMIT copy {describe_unlabelled(list(unlabelled), lost)}; restore "
            "them, or add --allow-missing-labels (in Python: "
            "allow_missing_labels=True) to leave them out"
        )
    if full and (missing_dev or missing_core):
        raise TimitError(
            "this TIMIT copy has all 630 speakers but not those of the standard lists; "
            f"missing dev speakers: {speaker_summary(missing_dev)}; "
            f"missing core test speakers: {speaker_summary(missing_core)}"
        )
    if not full and not allow_partial:
        raise TimitError(
            f"incomplete TIMIT copy ({layout} layout): {len(train_dir)} of "
            f"{N_TRAIN_SPEAKERS} training speakers; missing dev speakers: "
            f"{speaker_summary(missing_dev)}; missing core test speakers: "
            f"{speaker_summary(missing_core)}{without_labels}. Add --timit-partial "
            "(in Python: allow_partial=True) to split whatever speakers exist"
        )
    dev = sorted(s for s in present if s in DEV_SPEAKERS)
    test = sorted(s for s in present if s in CORE_TEST_SPEAKERS)
    if layout == "ldc":
        train = sorted(train_dir & present)
    else:
        train = sorted(present - listed)
    for name, chosen in (("test", test), ("dev", dev)):
        if not chosen:
            if len(train) < 3:
                raise TimitError(
                    f"too few speakers to build a {name} set: "
                    + speaker_summary(sorted(present))
                )
            n_take = max(1, round(0.15 * len(train)))
            picks = [
                train[i]
                for i in np.linspace(0, len(train) - 1, n_take).round().astype(int)
            ]
            chosen.extend(sorted(set(picks)))
            train = [s for s in train if s not in chosen]
    return {"train": train, "dev": sorted(dev), "test": sorted(test)}
