"""The paper's other applications: graphs over samples, few-shot learning, COVID-19 forecasting, tabular data."""
