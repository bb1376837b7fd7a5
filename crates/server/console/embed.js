// <sealtrail-activity server="https://audit.example.com" token="v4.public.…">
//
// A web component a SaaS product drops into its settings page to show the signed-in user their
// own account activity. It renders an iframe of {server}/console/activity.html#token=…: the
// token travels in the URL fragment, so it never reaches a server log, and the page inside runs
// on the Sealtrail origin, so the host page never sees the user's audit data. The frame is as
// wide as its container and as tall as its content (the page inside reports its height).
//
// A classic script, not a module, so a host page on another origin can load it with a plain
// <script src> (a cross-origin module script would need CORS).
//
// Attributes: server (default: where this script came from), token, label (the frame's
// accessible name, default "Account activity"), min-height (CSS length, default 320px).
// Events: `sealtrail-expired` (bubbles) when the token expired; set a fresh `token` to go on.
(() => {
  if (!window.customElements || customElements.get('sealtrail-activity')) return;
  const scriptOrigin = document.currentScript ? new URL(document.currentScript.src).origin : location.origin;

  class SealtrailActivity extends HTMLElement {
    static get observedAttributes() {
      return ['server', 'token', 'label', 'min-height'];
    }

    constructor() {
      super();
      this.frame = document.createElement('iframe');
      // Styles are set through the CSSOM so that a host page's strict style policy cannot
      // break the layout.
      Object.assign(this.frame.style, { display: 'block', width: '100%', border: '0', minHeight: '320px', height: '320px', colorScheme: 'normal' });
      this.frame.setAttribute('referrerpolicy', 'no-referrer');
      this.attachShadow({ mode: 'open' }).append(this.frame);
      this.onMessage = this.onMessage.bind(this);
    }

    connectedCallback() {
      this.style.display = this.style.display || 'block';
      window.addEventListener('message', this.onMessage);
      this.update();
    }

    disconnectedCallback() {
      window.removeEventListener('message', this.onMessage);
    }

    attributeChangedCallback() {
      if (this.isConnected) this.update();
    }

    get token() {
      return this.getAttribute('token');
    }

    set token(value) {
      this.setAttribute('token', value);
    }

    get server() {
      return (this.getAttribute('server') || scriptOrigin).replace(/\/+$/, '');
    }

    update() {
      const minHeight = this.getAttribute('min-height') || '320px';
      this.frame.style.minHeight = minHeight;
      this.frame.title = this.getAttribute('label') || 'Account activity';
      const token = this.token;
      if (!token) return;
      const src = `${this.server}/console/activity.html#token=${encodeURIComponent(token)}`;
      if (this.frame.getAttribute('src') !== src) this.frame.setAttribute('src', src);
    }

    onMessage(event) {
      if (event.source !== this.frame.contentWindow) return;
      let origin;
      try {
        origin = new URL(this.server).origin;
      } catch {
        return;
      }
      if (event.origin !== origin || !event.data || typeof event.data !== 'object') return;
      if (event.data.type === 'sealtrail-activity:height' && Number.isFinite(event.data.height)) {
        this.frame.style.height = `${Math.max(0, Math.min(event.data.height, 100000))}px`;
      } else if (event.data.type === 'sealtrail-activity:expired') {
        this.dispatchEvent(new CustomEvent('sealtrail-expired', { bubbles: true, composed: true }));
      }
    }
  }

  customElements.define('sealtrail-activity', SealtrailActivity);
})();
