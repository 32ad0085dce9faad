"""CV Tools settings.

Edit a value here, or override any of them without touching this file with an
environment variable named CVTOOLS_<NAME IN CAPITALS>, e.g. CVTOOLS_PORT=8080.
Lists are written as JSON in the environment: CVTOOLS_PUBLIC_DIRS='["/srv/images"]'.
"""

# Folder with one sub-folder per group (class). Created if missing.
# A relative path is taken from the folder you start CV Tools in.
dataset_dir = "./dataset"

# The network to fine-tune: a Hugging Face model id, or a folder saved with save_pretrained.
# Without network access (and not in the local cache) CV Tools falls back to the
# EfficientNet-Lite0 network that ships with it, and says so on every page.
neuronet = "facebook/convnextv2-base-22k-224"

# Share of each group's images kept aside to measure accuracy (0.2 = 20 %).
test_size = 0.2

# How many images the network looks at in one step (training and analysis).
batch_size = 16

# Duplicates: two images whose embeddings are closer than this are compared in detail (their
# keypoints and pixels decide whether they show the same picture; see the README).
# Cosine distance between the power-normalised image embeddings: 0 = identical, 1 = unrelated.
max_equal_distance = 0.3

# Address and port of the web pages. Keep host 127.0.0.1 (this computer only) unless
# other computers must reach CV Tools; then auth_token must be set.
host = "127.0.0.1"
port = 8000

# Folders whose images /cv may read by local path. Empty: only the dataset folder.
public_dirs: list[str] = []

# Password for every page and endpoint (empty: none). Required when host is not 127.0.0.1.
# Systems send it as the header "Authorization: Bearer <token>"; people log in once.
auth_token = ""

# Let /cv and the grabber fetch from private network addresses (192.168.x.x, localhost...).
allow_private_urls = False

# Largest upload accepted in one request, in megabytes.
max_upload_mb = 200

# Largest image accepted, in pixels (width x height). 50 megapixels by default.
max_image_pixels = 50_000_000

# Which numbers describe an image for the similar-image search:
# "features" (the network's internal description, finds look-alikes best) or
# "logits" (the group scores, as the original CV Tools did).
similarity_space = "features"

# Training mode when you press Start learning: "auto" (fast "head" mode on a normal
# computer, full "finetune" on a graphics card), "head" or "finetune".
train_mode = "auto"

# Runtime for everything but full fine-tuning: "auto" (ONNX Runtime when the exported network gives
# the same answers as PyTorch: several times faster on a CPU), "onnxruntime" or "torch".
inference_runtime = "auto"

# Say "unknown" for images unlike any group (calibrated after each training in head mode).
unknown_detection = True
# Share of known images that may be called unknown by mistake (0.05 = 5 %).
unknown_false_rejection = 0.05
# Let GET /cv put ["unknown", score] first in its answer (score above 1 means unknown).
# Off by default: /cv answers exactly as the original did.
cv_unknown = False

# Load the network when CV Tools starts (True), or only when it is first needed (False).
preload_model = True

# How label errors are found: "cross_validation" (each image judged by a model that did not learn
# from it; finds more real errors) or "production" (the main model's own answers, as the original).
anomaly_method = "cross_validation"

# Number of parts the Group images are split into for cross_validation (2-20).
anomaly_folds = 5

# "single": each image in one group. "multi": an image may be in several groups (a red dress in
# "red" and in "dress"); top-level groups marked exclusive are attributes whose sub-groups are its
# values. Only the starting mode of a new dataset: the Dataset page switches it afterwards, and the
# choice is kept in the dataset's catalog.
label_mode = "single"

# Two images whose perceptual hashes differ in at most this many of 64 bits are duplicates.
phash_max_bits = 6

# ---- Extend images (the grabber) ----
# Search pages used by the providers "google", "bing", "duckduckgo" and "openverse".
# Scraping a search engine may break its terms and can stop working at any time; the keyed
# official APIs below are the dependable route.
grab_google_url = "https://www.google.com/wml/search"
grab_bing_url = "https://www.bing.com/images/async"
grab_duckduckgo_url = "https://duckduckgo.com/"
grab_openverse_url = "https://api.openverse.org/v1/images/"

# Google Custom Search JSON API (provider "google_cse"): an API key and a search engine id (cx).
grab_google_cse_url = "https://www.googleapis.com/customsearch/v1"
google_cse_key = ""
google_cse_cx = ""

# Brave Image Search API (provider "brave"): a subscription token.
grab_brave_url = "https://api.search.brave.com/res/v1/images/search"
brave_api_key = ""

# Parallel downloads, at most grab_per_host at once from one site.
grab_workers = 12
grab_per_host = 2

# Images smaller than this many pixels on their shorter side are not taken.
grab_min_side = 50
