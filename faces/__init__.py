"""Face tools: detection, landmarks, crop and paste-back, and face-region masks."""
