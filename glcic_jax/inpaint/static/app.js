// The completion page: open or drop a photo, paint the hole, complete it.
// The mask canvas has the photo's own resolution; strokes are drawn in
// opaque red and sent as a white-on-black PNG (non-zero = hole).
"use strict";

const $ = (id) => document.getElementById(id);
const photo = $("photo"), mask = $("mask");
const photoCtx = photo.getContext("2d"), maskCtx = mask.getContext("2d");
let original = null;      // ImageBitmap of the opened photo
let originalFile = null;  // the file as opened, sent as is
let result = null;        // ImageBitmap of the last completion
const undoStack = [], redoStack = [];
let drawing = false, last = null;

function setStatus(text) { $("status").textContent = text; }

function show(bitmap) {
  photoCtx.drawImage(bitmap, 0, 0);
}

function updateButtons() {
  $("undo").disabled = undoStack.length === 0;
  $("redo").disabled = redoStack.length === 0;
  $("clear").disabled = !original;
  $("complete").disabled = !original;
}

async function open(file) {
  if (!file) return;
  try {
    original = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch (e) {
    setStatus(`Cannot open ${file.name}: not an image this browser reads.`);
    return;
  }
  originalFile = file;
  result = null;
  for (const canvas of [photo, mask]) {
    canvas.width = original.width;
    canvas.height = original.height;
  }
  show(original);
  maskCtx.clearRect(0, 0, mask.width, mask.height);
  undoStack.length = 0;
  redoStack.length = 0;
  $("download").hidden = true;
  updateButtons();
  setStatus(`${file.name}: ${original.width}x${original.height}. Paint the hole.`);
}

function point(event) {
  const box = mask.getBoundingClientRect();
  return {
    x: (event.clientX - box.left) * (mask.width / box.width),
    y: (event.clientY - box.top) * (mask.height / box.height),
  };
}

function stroke(from, to) {
  const box = mask.getBoundingClientRect();
  maskCtx.globalCompositeOperation = $("erase").getAttribute("aria-pressed") === "true"
    ? "destination-out" : "source-over";
  maskCtx.strokeStyle = "rgb(255, 0, 0)";
  maskCtx.lineCap = "round";
  maskCtx.lineJoin = "round";
  maskCtx.lineWidth = Number($("brush").value) * (mask.width / box.width);
  maskCtx.beginPath();
  maskCtx.moveTo(from.x, from.y);
  maskCtx.lineTo(to.x, to.y);
  maskCtx.stroke();
}

mask.addEventListener("pointerdown", (event) => {
  if (!original) return;
  drawing = true;
  mask.setPointerCapture(event.pointerId);
  undoStack.push(maskCtx.getImageData(0, 0, mask.width, mask.height));
  redoStack.length = 0;
  last = point(event);
  stroke(last, last);
  updateButtons();
});
mask.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const next = point(event);
  stroke(last, next);
  last = next;
});
for (const name of ["pointerup", "pointercancel"]) {
  mask.addEventListener(name, () => { drawing = false; });
}

function restore(from, to) {
  if (!from.length) return;
  to.push(maskCtx.getImageData(0, 0, mask.width, mask.height));
  maskCtx.putImageData(from.pop(), 0, 0);
  updateButtons();
}
$("undo").addEventListener("click", () => restore(undoStack, redoStack));
$("redo").addEventListener("click", () => restore(redoStack, undoStack));
$("clear").addEventListener("click", () => {
  undoStack.push(maskCtx.getImageData(0, 0, mask.width, mask.height));
  maskCtx.clearRect(0, 0, mask.width, mask.height);
  updateButtons();
});
$("erase").addEventListener("click", () => {
  const on = $("erase").getAttribute("aria-pressed") !== "true";
  $("erase").setAttribute("aria-pressed", String(on));
});

function maskPng() {
  // White where painted, black elsewhere, at the photo's resolution.
  const out = document.createElement("canvas");
  out.width = mask.width;
  out.height = mask.height;
  const ctx = out.getContext("2d");
  const painted = maskCtx.getImageData(0, 0, mask.width, mask.height);
  const pixels = ctx.createImageData(mask.width, mask.height);
  for (let i = 0; i < painted.data.length; i += 4) {
    const v = painted.data[i + 3] > 0 ? 255 : 0;
    pixels.data[i] = pixels.data[i + 1] = pixels.data[i + 2] = v;
    pixels.data[i + 3] = 255;
  }
  ctx.putImageData(pixels, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

$("complete").addEventListener("click", async () => {
  if (!original) return;
  $("complete").disabled = true;
  setStatus("Completing…");
  const form = new FormData();
  form.append("image", originalFile, originalFile.name);
  form.append("mask", await maskPng(), "mask.png");
  form.append("strategy", $("strategy").value);
  try {
    const response = await fetch("api/v1/inpaint", { method: "POST", body: form });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      setStatus(`Not completed (${response.status}): ${body.detail || response.statusText}`);
      return;
    }
    const blob = await response.blob();
    result = await createImageBitmap(blob);
    show(result);
    maskCtx.clearRect(0, 0, mask.width, mask.height);
    undoStack.length = 0;
    redoStack.length = 0;
    const link = $("download");
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.hidden = false;
    setStatus(`Completed (${response.headers.get("X-Strategy")}). Hold Space to see the original.`);
  } catch (e) {
    setStatus(`Not completed: ${e}`);
  } finally {
    updateButtons();
  }
});

document.addEventListener("keydown", (event) => {
  if (event.code === "Space" && original && result && !event.repeat) {
    event.preventDefault();
    show(original);
  }
  if ((event.ctrlKey || event.metaKey) && event.key === "z") restore(undoStack, redoStack);
  if ((event.ctrlKey || event.metaKey) && event.key === "y") restore(redoStack, undoStack);
});
document.addEventListener("keyup", (event) => {
  if (event.code === "Space" && result) show(result);
});

$("file").addEventListener("change", (event) => open(event.target.files[0]));
for (const name of ["dragenter", "dragover"]) {
  document.addEventListener(name, (event) => {
    event.preventDefault();
    document.body.classList.add("dragging");
  });
}
for (const name of ["dragleave", "drop"]) {
  document.addEventListener(name, () => document.body.classList.remove("dragging"));
}
document.addEventListener("drop", (event) => {
  event.preventDefault();
  open(event.dataTransfer.files[0]);
});

fetch("api/v1/model").then((r) => r.json()).then((info) => {
  $("model").textContent =
    `${info.checkpoint} (step ${info.step}, width ${info.generator_channels}, trained at ${info.trained_size} px)`;
}).catch(() => { $("model").textContent = "model information unavailable"; });
updateButtons();
