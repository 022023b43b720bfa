// The page to draw on: records raw ink and shows the model's guesses while the person draws.
//
// Mouse, pen and finger take one code path (Pointer Events). Each stroke is recorded as the
// raw Quick, Draw! format records it: [xs, ys, ts], the pointer's position in CSS pixels from
// the canvas's top-left corner and the milliseconds since the drawing's first point. The
// server simplifies the ink as the dataset was simplified, so the page does no ink math.
"use strict";

// Guesses shown: this many, or as many as the model has classes.
const TOP_K = 5;
// While a stroke is being drawn, at most one guess is asked for in this many milliseconds;
// when a stroke ends, at once.
const DRAWING_INTERVAL_MS = 150;

const canvas = document.querySelector('[data-testid="canvas"]');
const guesses = document.querySelector('[data-testid="guesses"]');
const statusLine = document.querySelector('[data-testid="status"]');
const clearButton = document.querySelector('[data-testid="clear"]');
const classesLine = document.querySelector('[data-testid="classes"]');
const context = canvas.getContext("2d");

let strokes = []; // each [xs, ys, ts]
let current = null; // the stroke being drawn, or null while the pen is up
let firstPointAt = null; // the event time of the drawing's first point
// When the pen last lifted: the ink's version then and the event's time. A guess about that
// version (or a later one) is the guess for everything drawn so far.
let penLifted = null;
// `version` changes with every change of the ink; `epoch` with every clear, so that an
// answer about a cleared drawing is dropped.
let version = 0;
let epoch = 0;
let shownVersion = -1;
let requestedVersion = -1;
let inFlight = false;
let lastRequestAt = -Infinity;
let timer = null;
let classCount = null; // known once /classes has answered

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

// --- Drawing ---------------------------------------------------------------------------

function fitCanvas() {
  const rect = canvas.getBoundingClientRect();
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(rect.width * ratio);
  canvas.height = Math.round(rect.height * ratio);
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.lineWidth = 3;
  context.lineCap = "round";
  context.lineJoin = "round";
  context.strokeStyle = "#202124";
  context.fillStyle = "#202124";
  strokes.forEach(paintStroke);
}

function paintStroke(stroke) {
  const [xs, ys] = stroke;
  if (xs.length === 1) {
    context.beginPath();
    context.arc(xs[0], ys[0], context.lineWidth / 2, 0, 2 * Math.PI);
    context.fill();
    return;
  }
  context.beginPath();
  context.moveTo(xs[0], ys[0]);
  for (let i = 1; i < xs.length; i++) context.lineTo(xs[i], ys[i]);
  context.stroke();
}

function addPoint(event) {
  const rect = canvas.getBoundingClientRect();
  const x = event.clientX - rect.left;
  const y = event.clientY - rect.top;
  const [xs, ys, ts] = current;
  const last = xs.length - 1;
  if (last >= 0 && xs[last] === x && ys[last] === y) return; // the pointer did not move
  if (firstPointAt === null) firstPointAt = event.timeStamp;
  xs.push(x);
  ys.push(y);
  ts.push(Math.round(event.timeStamp - firstPointAt));
  if (last >= 0) {
    context.beginPath();
    context.moveTo(xs[last], ys[last]);
    context.lineTo(x, y);
    context.stroke();
  } else {
    paintStroke(current);
  }
  version++;
}

canvas.addEventListener("pointerdown", (event) => {
  if (!event.isPrimary || current !== null) return; // one finger draws; others are ignored
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  current = [[], [], []];
  strokes.push(current);
  addPoint(event);
});

canvas.addEventListener("pointermove", (event) => {
  if (current === null || !canvas.hasPointerCapture(event.pointerId)) return;
  // The browser may merge several moves into one event: each of them is a point of ink.
  const moves = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const move of moves.length ? moves : [event]) addPoint(move);
  scheduleGuess();
});

function endStroke(event) {
  if (current === null || !event.isPrimary) return;
  current = null;
  penLifted = { version, at: event.timeStamp };
  if (shownVersion === version) {
    markShown(strokes.length, version); // the guess on screen already covers every point
  }
  scheduleGuess();
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

clearButton.addEventListener("click", () => {
  strokes = [];
  current = null;
  firstPointAt = null;
  penLifted = null;
  version++;
  epoch++;
  shownVersion = requestedVersion = version;
  context.clearRect(0, 0, canvas.width, canvas.height);
  guesses.replaceChildren();
  delete guesses.dataset.strokes;
  setStatus("Draw on the white square.");
});

// --- Guessing --------------------------------------------------------------------------

function scheduleGuess() {
  clearTimeout(timer);
  const wait = current === null ? 0 : lastRequestAt + DRAWING_INTERVAL_MS - performance.now();
  if (wait > 0) {
    timer = setTimeout(scheduleGuess, wait);
    return;
  }
  guess();
}

async function guess() {
  const points = strokes.reduce((total, stroke) => total + stroke[0].length, 0);
  if (inFlight || requestedVersion === version || points < 2) return;
  const asked = { version, epoch, strokes: strokes.length };
  const drawing = strokes.map(([xs, ys, ts]) => [xs.slice(), ys.slice(), ts.slice()]);
  requestedVersion = version;
  lastRequestAt = performance.now();
  inFlight = true;
  try {
    const response = await fetch("/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request(drawing)),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    if (asked.epoch === epoch && asked.version > shownVersion) {
      show(answer.predictions[0], asked);
    }
  } catch (error) {
    if (asked.epoch === epoch) setStatus(`No guess: ${error.message}`, true);
  } finally {
    inFlight = false;
  }
  scheduleGuess(); // the ink may have changed while the answer was on its way
}

function request(drawing) {
  const body = { instances: [{ drawing }] };
  // Before the classes are known, the server's own number of guesses.
  if (classCount !== null) body.parameters = { top_k: Math.min(TOP_K, classCount) };
  return body;
}

function show(prediction, asked) {
  const items = prediction.labels.map((label, index) => {
    const item = document.createElement("li");
    const probability = document.createElement("span");
    probability.className = "probability";
    probability.textContent = `${(prediction.probabilities[index] * 100).toFixed(1)}%`;
    item.append(`${label} `, probability);
    return item;
  });
  guesses.replaceChildren(...items);
  shownVersion = asked.version;
  markShown(asked.strokes, asked.version);
}

// Notes what the guess on screen is about, so that a test or a benchmark can wait for the
// stroke it drew: how many strokes, whether the pen has lifted since, and how long after
// the pen lifted the guess for all of its ink appeared.
function markShown(strokeCount, shown) {
  guesses.dataset.strokes = String(strokeCount);
  const complete = current === null && penLifted !== null && shown >= penLifted.version;
  guesses.dataset.penUp = String(complete);
  if (complete) {
    const latency = Math.max(0, performance.now() - penLifted.at);
    guesses.dataset.latencyMs = latency.toFixed(1);
    setStatus(`Guessed ${Math.round(latency)} ms after the stroke ended.`);
  } else {
    setStatus("Guessing while you draw\u2026");
  }
}

async function listClasses() {
  try {
    const response = await fetch("/classes");
    const { classes } = await response.json();
    classCount = classes.length;
    classesLine.textContent = `I know ${classes.length} things: ${classes.join(", ")}.`;
  } catch (error) {
    classesLine.textContent = `The list of things I know did not load: ${error.message}`;
  }
}

window.addEventListener("resize", fitCanvas);
fitCanvas();
listClasses();
