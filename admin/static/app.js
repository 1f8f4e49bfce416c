/* ComfyPod admin: small behaviours htmx does not cover. */
(function () {
  "use strict";

  // Live logs stick to their newest line unless the reader has scrolled up.
  var following = new WeakMap();

  function atBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 24;
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    var old = event.detail.target.querySelector("pre.log[data-follow]");
    following.set(event.detail.target, !old || atBottom(old));
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    var follow = following.has(target) ? following.get(target) : true;
    target.querySelectorAll("pre.log[data-follow]").forEach(function (pre) {
      if (follow) pre.scrollTop = pre.scrollHeight;
    });
  });

  // A session that expired mid-poll: htmx is told where to log in (HX-Redirect); stop polling errors
  // from piling up in the console meanwhile.
  document.addEventListener("htmx:responseError", function (event) {
    if (event.detail.xhr && event.detail.xhr.status === 401) {
      var to = event.detail.xhr.getResponseHeader("HX-Redirect");
      if (to) window.location.href = to;
    }
  });
})();
