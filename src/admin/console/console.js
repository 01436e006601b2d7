// The console's only script: the meeting page's "Copy the invite text"
// button. Without it the read-only text can still be selected and copied.
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("copy");
  var text = document.getElementById("invite");
  if (!button || !text) return;
  button.addEventListener("click", function () {
    var done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text.value).then(done);
    } else {
      text.focus();
      text.select();
      if (document.execCommand("copy")) done();
    }
  });
});
