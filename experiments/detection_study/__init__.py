"""Detection study (issue 11): DFL and friends on hand-annotated aerial tree crowns and synthetic controls.

Run ``python experiments/detection_study/fetch_data.py`` once, then
``python experiments/detection_study/main.py --preset quick --out runs/study``.
"""
