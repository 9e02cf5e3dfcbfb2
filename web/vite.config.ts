import { defineConfig } from "vite";

// `npm run dev` proxies the API to a running `make run` platform.
export default defineConfig({
  build: { target: "es2022", sourcemap: true, chunkSizeWarningLimit: 900 },
  server: {
    proxy: {
      "/api": { target: "http://127.0.0.1:8080", ws: true },
      "/live": "http://127.0.0.1:8080",
    },
  },
});
