"""Media helpers shared by ingest, edge and the benchmarks: the encoded-frame wire format, the aiortc
extension that forwards encoded frames, ICE settings and SDP checks."""
