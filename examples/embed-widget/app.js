// The app's own script: the widget opens the bundle and shows its state; this only calls it.
import "./waystation/widget.js";

const widget = /** @type {import("./waystation/widget.js").WaystationApp} */ (document.getElementById("digits"));
const button = /** @type {HTMLButtonElement} */ (document.getElementById("classify"));
const answer = /** @type {HTMLOutputElement} */ (document.getElementById("answer"));

widget.addEventListener("ready", () => {
  button.disabled = false;
});
widget.addEventListener("error", () => {
  button.disabled = widget.state !== "ready";
});

button.addEventListener("click", async () => {
  const [sample] = await widget.call("samples");
  const [result] = await widget.call("classify_features", { features: [sample.pixels] });
  answer.textContent = `a drawn ${sample.label}, read as ${result.digit}`;
  answer.dataset.digit = String(result.digit);
});
