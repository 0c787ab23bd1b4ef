"""Detection study (issue 11): DFL and friends on hand-annotated aerial tree crowns and synthetic controls.

Run ``python -m experiments.detection_study.fetch_data`` once, then
``python -m experiments.detection_study.main --config quick --out runs/study``.
"""
