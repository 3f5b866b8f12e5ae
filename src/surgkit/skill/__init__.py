"""surgkit.skill: multimodal surgical skill assessment (SurgFusion-Net with Divergence Regulated Attention).

Modules: :mod:`~surgkit.skill.attention` (DRA), :mod:`~surgkit.skill.model` (unimodal branch, fusion
branch with CSFB and DFB, all ablation baselines), :mod:`~surgkit.skill.config` (model/training configs,
shipped ablation configs), :mod:`~surgkit.skill.train` (two-phase training), :mod:`~surgkit.skill.protocol`
(cross-validation runs), :mod:`~surgkit.skill.table`, :mod:`~surgkit.skill.predict`,
:mod:`~surgkit.skill.viz` (CSFB attention curves) and :mod:`~surgkit.skill.cli`. See docs/skill.md.
"""
