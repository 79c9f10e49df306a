// Copy buttons: <button class="tv-copy" data-copy-target="element-id">. No library, no CDN.
document.addEventListener("click", function (event) {
  var button = event.target.closest("button.tv-copy");
  if (!button) return;
  event.preventDefault();
  var source = document.getElementById(button.dataset.copyTarget);
  if (!source) return;
  var text = source.value !== undefined ? source.value : source.textContent;
  function done(ok) {
    var label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = ok ? "Copied ✓" : "Select and copy manually";
    button.classList.toggle("tv-copied", ok);
    button.setAttribute("data-copied", ok ? "yes" : "no");
    setTimeout(function () { button.textContent = label; button.classList.remove("tv-copied"); }, 2500);
  }
  function fallback() {
    // Works over plain http (navigator.clipboard needs a secure context).
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    done(ok);
  }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
  } else {
    fallback();
  }
});
