// placeholder: the dashboard server (see libs/dashboard)
export {};
