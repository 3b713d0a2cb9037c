"""Language side of LaMo: the text corpus for the auxiliary language loss (:mod:`trainers.lm.corpus`)
and the project's own small pre-trained GPT-2 ("stage 1", :mod:`trainers.lm.pretrain`).

Spec: ``../shared/docs/lamo_spec.md`` §2 (language loss: WikiText-103, 1024-token blocks, batch 2).
Text is read from ``../shared/data/text`` (or ``$LAMO_TEXT_DIR``); none of it lives in this repo.
"""
