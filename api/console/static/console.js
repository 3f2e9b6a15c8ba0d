// Sendstream console: progressive enhancement only; every page works without it.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const text = source.textContent.trim();
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard (plain http on another host): select the text for the user to copy.
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    return;
  }
  button.classList.add("copied");
  button.setAttribute("aria-live", "polite");
  button.textContent = "Copied";
  setTimeout(() => { button.classList.remove("copied"); button.textContent = "Copy"; }, 2000);
});
