# Ablation: fewer frames per clip (T=18 instead of 36), for the train clips
# and the head alike; longer videos run in overlapping windows at test time.
_base_ = './ttsrn_yvis.py'
num_frames = 18
