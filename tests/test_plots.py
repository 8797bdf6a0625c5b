import torch

from sweepbook import plots
from sweepbook.data import Split
from sweepbook.training import History


def test_learning_curves_show_loss_and_the_score():
    history = History("acc", train_loss=[1.0, 0.5, 0.4, 0.2], val_loss=[0.6, 0.3],
                      val_score=[0.8, 0.9])
    figure = plots.learning_curves(history)
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == ["Loss", "Validation acc"]
    assert list(figure.axes[1].lines[0].get_ydata()) == [0.8, 0.9]


def test_confusion_matrix_counts_and_reports_accuracy():
    figure = plots.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], ["a", "b", "c"])
    axes = figure.axes[0]
    assert axes.get_title() == "Confusion matrix (accuracy 0.750)"
    assert axes.images[0].get_array().tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_sample_predictions_mark_mistakes_in_red():
    split = Split(torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 2]))
    figure = plots.sample_predictions(split, torch.tensor([0, 2, 2]), ["a", "b", "c"])
    labels = figure.axes[0].texts
    assert [label.get_text() for label in labels] == ["a (a)", "c (b)", "c (c)"]
    assert [label.get_color() for label in labels] == ["black", "red", "black"]
    assert figure.axes[0].images[0].get_array().shape == (11, 27)  # 3 images, 8x8, label rows


def test_predicted_against_true_shows_the_rmse():
    figure = plots.predicted_vs_true([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    axes = figure.axes[0]
    assert axes.get_title() == "Predicted against true (RMSE 1.15)"
    assert axes.collections[0].get_offsets().tolist() == [[1, 1], [2, 2], [3, 5]]
