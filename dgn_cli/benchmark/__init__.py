"""Benchmarks: how fast (`speed`), how good (`quality`), and the tables both print (`report`).

speed    end-to-end and per-component timing, parameters and GMACs at a frame size
quality  PSNR/SSIM on a GOPRO-layout or synthetic split, near/far thirds, the Table IX
         depth ablation and the no-depth baseline
report   the report dict -> rich tables and markdown
"""
