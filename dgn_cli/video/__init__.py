"""Video: decode, slide the five-frame window, restore, encode, mux; resumable and exact.

pipeline  deblur_video(engine, src, dst, VideoOptions()): the three-thread pipeline,
          work folder, resume, shards and the final mux (the entry point)
window    the sliding window over a stream of frames (reflected at clip and shot ends)
scenes    scene-cut detection, so no frame is restored with frames of another shot
probe     what a file holds (streams, rate, frame count) via the bundled ffmpeg
ffmpeg    decoder and encoder processes, segments, concat and mux plans
codecs    the codec, preset and pixel format for an output container
"""
