"""Language side of LaMo: the text corpus for the auxiliary language loss (:mod:`trainers.lm.corpus`)
and the project's own small pre-trained GPT-2 ("stage 1", :mod:`trainers.lm.pretrain`).

Recipe: ``docs/lamo_recipe.md`` §2 (language loss: WikiText-103, 1024-token blocks, batch 2; from the
official LaMo code, github.com/srzer/LaMo-2023 ``experiment-d4rl/get_nlp_datasets.py``). Text is read
from ``$LAMO_TEXT_DIR``, else the offline mirror (see :mod:`trainers.paths`); none of it lives in this
repo (``docs/lamo_recipe.md`` §9).
"""
