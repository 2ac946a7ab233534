# Reads an SVG with Python's own XML parser (independent of Loom's writer) and prints what the
# plot tests check, as JSON: the root tag, each polyline's points by id, and all text content.
import json
import sys
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[1]).getroot()  # raises (exit 1) when the file is not well-formed
polylines = {}
for p in root.iter(NS + "polyline"):
    polylines[p.get("id")] = [[float(v) for v in pt.split(",")] for pt in p.get("points").split()]
texts = [t.text for t in root.iter(NS + "text") if t.text]
print(json.dumps({"root": root.tag, "polylines": polylines, "texts": texts}))
